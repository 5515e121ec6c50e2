"""The harness that runs inside the sandbox (standard library only, imports nothing slow).

    python -I -S -B -X utf8 -c <this file> PROGRAM_FD SPEC_FD RESULT_FD MODE RLIMITS

It sets the rlimits (``RLIMIT_AS=1073741824,...``) on itself (inherited by every process after
it, and not raisable again), then forks the program process before it reads the spec (the
tests); the program fd is read by the program process only:

- **program process**, untrusted from the moment the program runs; it has closed the spec and
  result fds first (it never sees the tests or the expected outputs):
  - ``call`` mode: executes the program as module ``solution`` and answers the harness's
    requests over a pipe pair: look up top-level names, call, get an attribute or item,
    iterate (materialized into a list), ``next``, ``len``, ``str``, ``repr``, ``bool``,
    ``in``. Results go back as plain data (see `encode`); any other object stays in the
    program process and the harness gets an opaque reference (`Remote`);
  - ``stdio`` mode: runs ``python solution.py`` once per case (stdin = the case's input,
    stdout to a file), in its own session, killed with its group afterwards.
- **harness process**: in ``call`` mode runs the test statements in its own untouched
  interpreter, where the program's top-level names are `Remote` proxies; every ``assert`` and
  bare expression statement is a unit. It writes one record per unit to RESULT_FD
  (``{"unit": i, "ok": bool, "error": str | None}``, or ``{"unit": i, "stdout": str, "exit": int}``
  in ``stdio`` mode, which the parent compares), then ``{"done": n}``.

So the comparisons of a test (``assert f(x) == y``) run where the program cannot reach:
patched builtins, an always-equal object, ``sys.exit(0)`` or ``os._exit(0)`` in the program,
atexit hooks and printed text do not change a verdict. A program that kills or stalls the
harness only loses its verdict.

Wire format (`encode` / `decode`, used on every channel): length-prefixed frames of a
type-tagged binary encoding of ``None, bool, int, float, complex, str, bytes, list, tuple,
dict, set, frozenset`` and references ``R`` to objects kept in the program process. Subclasses
(``Counter``, named tuples, ``IntEnum`` ...) travel as their base type. Decoding builds only
these types, so nothing the program sends can carry behaviour into the harness or the parent.
"""

import os
import resource
import struct
import sys

MAX_FRAME = 64 << 20  # bytes; a larger message is an error
_F64 = struct.Struct(">d")


# ----------------------------------------------------------------------------- wire format


def encode(value, ref=None, out=None):
    """Append the encoding of `value` to bytearray `out` (returned); non-plain objects go
    through ``ref(obj) -> int`` and are sent as references (TypeError without `ref`)."""
    out = bytearray() if out is None else out
    ref = ref or _no_ref
    if value is None:
        out += b"N"
    elif value is True or value is False:
        out += b"T" if value else b"F"
    elif isinstance(value, int):
        _chunk(out, b"i", format(int(value), "x").encode())
    elif isinstance(value, float):
        out += b"f" + _F64.pack(value)
    elif isinstance(value, str):
        _chunk(out, b"s", str.__str__(value).encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray)):
        _chunk(out, b"b", bytes(value))
    elif isinstance(value, complex):
        out += b"c" + _F64.pack(value.real) + _F64.pack(value.imag)
    elif isinstance(value, (list, tuple, set, frozenset)):
        tag = (
            b"l"
            if isinstance(value, list)
            else b"t"
            if isinstance(value, tuple)
            else b"z"
            if isinstance(value, frozenset)
            else b"S"
        )
        items = list(value)
        out += tag + len(items).to_bytes(4, "big")
        for v in items:
            encode(v, ref, out)
    elif isinstance(value, dict):
        items = list(dict.items(value))
        out += b"d" + len(items).to_bytes(4, "big")
        for k, v in items:
            encode(k, ref, out)
            encode(v, ref, out)
    else:
        out += b"R" + ref(value).to_bytes(8, "big")
    return out


def _chunk(out, tag, data):
    out += tag + len(data).to_bytes(4, "big") + data


def decode(data, deref):
    """Inverse of `encode` on bytes; ``R`` references become ``deref(int)``.

    Raises:
        ValueError: malformed or trailing data.
    """
    value, end = _decode_at(memoryview(data), 0, deref)
    if end != len(data):
        raise ValueError("trailing bytes after value")
    return value


def _decode_at(buf, pos, deref):
    tag = bytes(buf[pos : pos + 1])
    pos += 1
    if tag == b"N":
        return None, pos
    if tag in (b"T", b"F"):
        return tag == b"T", pos
    if tag in (b"f", b"c"):
        n = 8 if tag == b"f" else 16
        if pos + n > len(buf):
            raise ValueError("truncated float")
        re_ = _F64.unpack_from(buf, pos)[0]
        return (re_ if tag == b"f" else complex(re_, _F64.unpack_from(buf, pos + 8)[0])), pos + n
    if tag == b"R":
        if pos + 8 > len(buf):
            raise ValueError("truncated reference")
        return deref(int.from_bytes(buf[pos : pos + 8], "big")), pos + 8
    if pos + 4 > len(buf):
        raise ValueError(f"truncated value (tag {tag!r})")
    n = int.from_bytes(buf[pos : pos + 4], "big")
    pos += 4
    if tag in (b"i", b"s", b"b"):
        if pos + n > len(buf):
            raise ValueError("truncated data")
        raw = bytes(buf[pos : pos + n])
        value = (
            int(raw.decode("ascii"), 16)
            if tag == b"i"
            else raw.decode("utf-8", "surrogatepass")
            if tag == b"s"
            else raw
        )
        return value, pos + n
    if tag in (b"l", b"t", b"S", b"z", b"d"):
        items = []
        for _ in range(n * 2 if tag == b"d" else n):
            item, pos = _decode_at(buf, pos, deref)
            items.append(item)
        if tag == b"d":
            return dict(zip(items[::2], items[1::2])), pos
        return {b"l": list, b"t": tuple, b"S": set, b"z": frozenset}[tag](items), pos
    raise ValueError(f"unknown tag {tag!r}")


def send(fd, value, ref=None):
    """Write one frame holding `value` (references through `ref`)."""
    write_frame(fd, encode(value, ref))


def write_frame(fd, body):
    data = memoryview(len(body).to_bytes(4, "big") + body)
    while data:
        data = data[os.write(fd, data) :]


def _no_ref(obj):
    raise TypeError(f"cannot send a {type(obj).__name__}")


def recv(fd, deref=None):
    """Read one frame and decode it. Raises EOFError when the other side is gone."""
    size = int.from_bytes(_read_exactly(fd, 4), "big")
    if size > MAX_FRAME:
        raise ValueError(f"message of {size} bytes exceeds {MAX_FRAME}")
    return decode(_read_exactly(fd, size), deref or _no_deref)


def _no_deref(i):
    raise ValueError("unexpected reference")


def _read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frames(data):
    """Decode every complete frame of a byte string (the parent reads reports with this);
    stops at the first incomplete or malformed one."""
    values, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + size > len(data):
            break
        try:
            values.append(decode(data[pos + 4 : pos + 4 + size], _no_deref))
        except (ValueError, RecursionError, MemoryError):
            break
        pos += 4 + size
    return values


def _read_all(fd):
    with os.fdopen(fd, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------- program process


def serve(program, requests, replies):
    """Run the program, then answer the harness's requests until it hangs up. Never returns."""
    import builtins

    objects = {}

    def ref(obj):
        objects[id(obj)] = obj
        return id(obj)

    ns = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(program, "solution.py", "exec"), ns)
        loaded = None
    except BaseException as exc:  # the program's own errors, SystemExit included
        loaded = (type(exc).__name__, str(exc)[:2000])
    send(replies, loaded)
    ops = {
        "names": lambda o, a: {n: ns[n] for n in a if n in ns},
        "call": lambda o, a: o(*a[0], **a[1]),
        "getattr": lambda o, a: getattr(o, a),
        "getitem": lambda o, a: o[a],
        "iter": lambda o, a: list(o),
        "next": lambda o, a: next(o),
        "len": lambda o, a: len(o),
        "str": lambda o, a: str(o),
        "repr": lambda o, a: repr(o),
        "bool": lambda o, a: bool(o),
        "contains": lambda o, a: a in o,
    }
    while True:
        try:
            op, target, arg = recv(requests, objects.get)
        except EOFError:
            for stream in (sys.stdout, sys.stderr):  # the program's prints reach the log
                try:
                    stream.flush()
                except BaseException:
                    pass
            os._exit(0)
        try:
            body = encode((True, ops[op](target, arg)), ref)
        except BaseException as exc:  # the program's errors, or an unencodable result
            body = encode((False, (type(exc).__name__, str(exc)[:2000])), ref)
        write_frame(replies, body)


# ----------------------------------------------------------------------------- harness process


class ProgramError(Exception):
    """The program raised an exception that is not a built-in one."""


class ProgramExit(BaseException):
    """The program raised SystemExit / KeyboardInterrupt, or its process died."""


class Channel:
    """Requests to the program process; replies decoded into plain data and `Remote` refs."""

    def __init__(self, requests, replies):
        self.requests, self.replies, self.dead = requests, replies, None

    def ask(self, op, target=None, arg=None):
        if self.dead:
            raise ProgramExit(self.dead)
        request = encode((op, target, arg), _remote_ref)  # TypeError for an unsendable argument
        try:
            write_frame(self.requests, request)
            ok, value = recv(self.replies, lambda i: Remote(self, i))
        except (EOFError, OSError):
            self.dead = "the program process died"
            raise ProgramExit(self.dead) from None
        except Exception as exc:  # a reply that is not (ok, value): the channel is unusable
            self.dead = f"malformed reply from the program ({type(exc).__name__})"
            raise ProgramExit(self.dead) from None
        if not ok:
            raise _exception(*value)
        return value


def _remote_ref(obj):
    if isinstance(obj, Remote):
        return obj._ref
    raise TypeError(f"cannot pass a {type(obj).__name__} to the program")


def _exception(name, message):
    import builtins

    cls = getattr(builtins, str(name), None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(message)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return ProgramExit(f"{name}: {message}")
    return ProgramError(f"{name}: {message}")


class Remote:
    """An object living in the program process. Equality and hashing are by identity."""

    __slots__ = ("_chan", "_ref")

    def __init__(self, chan, ref):
        object.__setattr__(self, "_chan", chan)
        object.__setattr__(self, "_ref", ref)

    def _ask(self, op, arg=None):
        return self._chan.ask(op, self, arg)

    def __call__(self, *args, **kwargs):
        return self._ask("call", (args, kwargs))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __iter__(self):
        return iter(self._ask("iter"))

    def __next__(self):
        return self._ask("next")

    def __len__(self):
        return self._ask("len")

    def __str__(self):
        return self._ask("str")

    def __repr__(self):
        return self._ask("repr")

    def __bool__(self):
        return self._ask("bool")

    def __contains__(self, item):
        return self._ask("contains", item)

    def __eq__(self, other):
        return isinstance(other, Remote) and other._ref == self._ref

    def __hash__(self):
        return hash(self._ref)


def run_tests(chan, spec, result_fd):
    """Run the test statements in order; report each unit (``assert`` / bare expression)."""
    import builtins

    env = {"__name__": "__tests__", "__builtins__": builtins}
    try:
        env.update(chan.ask("names", None, spec["names"]))
    except BaseException:
        pass  # every unit using the program's names fails with the channel's reason
    unit = 0
    for source, lineno, is_unit in spec["statements"]:
        try:
            exec(compile("\n" * (lineno - 1) + source, "tests.py", "exec"), env)
            error = None
        except BaseException as exc:
            error = f"line {lineno}: {type(exc).__name__}: {str(exc)[:300]}"
        if is_unit:
            send(result_fd, {"unit": unit, "ok": error is None, "error": error})
            unit += 1
        elif error:
            send(result_fd, {"setup_error": error})
    send(result_fd, {"done": unit})


def call_mode(program_fd, spec_fd, result_fd):
    to_prog_r, to_prog_w = os.pipe()
    from_prog_r, from_prog_w = os.pipe()
    if os.fork() == 0:  # before the spec is read: the tests never exist in this process
        for fd in (spec_fd, result_fd, to_prog_w, from_prog_r):
            os.close(fd)
        serve(_read_all(program_fd).decode("utf-8", "surrogateescape"), to_prog_r, from_prog_w)
    for fd in (program_fd, to_prog_r, from_prog_w):
        os.close(fd)
    spec = decode(_read_all(spec_fd), _no_deref)
    chan = Channel(to_prog_w, from_prog_r)
    try:
        failed = recv(from_prog_r)
    except (EOFError, ValueError):
        failed = ("ProcessDied", "the program process died while loading")
    if failed:
        send(result_fd, {"load_error": f"{failed[0]}: {failed[1]}"})
        chan.dead = "the program failed to load"
    run_tests(chan, spec, result_fd)


def stdio_mode(program_fd, spec_fd, result_fd):
    """Run the program once per input; report its stdout (the parent compares it)."""
    with open("solution.py", "wb") as f:
        f.write(_read_all(program_fd))
    spec = decode(_read_all(spec_fd), _no_deref)
    for unit, stdin_text in enumerate(spec["inputs"]):
        with open("stdin.txt", "w") as f:
            f.write(stdin_text)
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.dup2(os.open("stdin.txt", os.O_RDONLY), 0)
            os.dup2(os.open("stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
            os.closerange(3, 1 << 16)
            os.execv(sys.executable, [sys.executable, "-I", "-S", "-B", "-X", "utf8", "solution.py"])
        _, status = os.waitpid(pid, 0)
        try:
            os.killpg(pid, 9)  # anything the case left behind
        except ProcessLookupError:
            pass
        with open("stdout.txt", "rb") as f:
            text = f.read().decode("utf-8", "replace")
        send(result_fd, {"unit": unit, "stdout": text, "exit": os.waitstatus_to_exitcode(status)})
    send(result_fd, {"done": len(spec["inputs"])})


def main():
    program_fd, spec_fd, result_fd = (int(a) for a in sys.argv[1:4])
    mode, rlimits = sys.argv[4], sys.argv[5]
    for item in rlimits.split(","):
        name, value = item.split("=")
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    (call_mode if mode == "call" else stdio_mode)(program_fd, spec_fd, result_fd)


if __name__ == "__main__":
    main()
