"""Problem sources: loading and row validation (prompt rendering is `reasoner.prompts`).

A source is one of:
- ``arithmetic``: procedural problems (`reasoner.data.arithmetic`), generated on the fly;
- ``multihop``: procedural 2-hop questions about a fictional world, answerable by searching its
  corpus (`reasoner.data.multihop`);
- ``vendored:NAME``: a JSONL file shipped in ``reasoner/data/vendored`` (gsm8k_train, gsm8k_test, math_train,
  math500, aime24, aime25, amc23, humaneval, mbpp; see its SOURCES.md for origins and licenses);
- a path to a ``.jsonl`` / ``.json`` / ``.parquet`` file;
- a Hugging Face dataset id (loaded with `datasets.load_dataset`).

Rows need ``problem`` and ``answer`` (``id`` and ``solution`` are optional). Every row is
validated on load: a line that is not valid JSON or not a JSON object, a missing, empty or
wrong-typed field, or text that is not valid UTF-8 (undecodable bytes in the file, or a lone
surrogate escape) makes it bad. A bad row raises `BadRowError` naming the source, the row
(for JSON Lines files, its line number) and the field; with ``on_bad_row="skip"`` bad rows are
dropped and one warning names the file, every bad row number and the first reasons.
JSON Lines and JSON files are read line by line here (so one bad line does not hide the rest);
Parquet files and hub datasets go through `datasets`.

Code rows (HumanEval / MBPP schema: ``prompt``, ``entry_point``, ``tests``, optional
``canonical_solution``) become problems whose ``answer`` is the code verifier's reference,
``{"tests": ..., "entry_point": ...}`` as JSON (`verifiers.code.suite.reference`), and whose
``meta["entry_point"]`` names the function. When the prompt is itself code (HumanEval: a
signature and docstring), the problem text shows it in a ```python block and the worked
solution is prompt + canonical solution; otherwise (MBPP: a sentence) the problem text is the
sentence plus the first test, which shows the function's name and signature.
"""

from __future__ import annotations

import ast
import json
import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import reasoner.data.arithmetic as arithmetic
import reasoner.data.multihop as multihop
from reasoner.types import Problem
from verifiers.code.suite import parse_suite, reference

log = logging.getLogger(__name__)
T = TypeVar("T")

VENDORED_DIR = Path(__file__).parent / "vendored"
#: sources generated on the fly (they need a problem count)
GENERATED = ("arithmetic", "multihop")
VENDORED = ("gsm8k_train", "gsm8k_test", "math_train", "math500", "aime24", "aime25", "amc23", "humaneval", "mbpp")


class BadRowError(ValueError):
    """A dataset row failed validation; the message names the source, row and field."""


def _check_text(row: dict[str, Any], where: str) -> None:
    """Every string field must be encodable as UTF-8 (undecodable file bytes are read as lone
    surrogates, see `_json_rows`, and a JSON ``\\ud800`` escape decodes to one)."""
    for name, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise BadRowError(
                    f"{where}: field {name!r} has text that is not valid UTF-8 (character {err.start})"
                ) from None


def _validate(row: Any, source: str, index: int, number: int) -> Problem:
    """The `Problem` of one row; `index` is its 0-based position (the default id), `number` the
    row number messages give (the line number in a JSON Lines file)."""
    where = f"{source}: row {number}"
    if not isinstance(row, dict):
        raise BadRowError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    _check_text(row, where)
    if row.get("id") is not None and (isinstance(row["id"], bool) or not isinstance(row["id"], (str, int))):
        raise BadRowError(f"{where}: field 'id' must be a string or integer, got {type(row['id']).__name__}")
    if "tests" in row and "entry_point" in row:
        return _code_problem(row, where, index)
    for name in ("problem", "answer"):
        if name not in row or row[name] is None:
            raise BadRowError(f"{where}: missing field {name!r}")
    problem, answer = row["problem"], row["answer"]
    if not isinstance(problem, str):
        raise BadRowError(f"{where}: field 'problem' must be a string, got {type(problem).__name__}")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise BadRowError(f"{where}: field 'answer' must be a string or number, got {type(answer).__name__}")
    if not problem.strip():
        raise BadRowError(f"{where}: field 'problem' is empty")
    if not str(answer).strip():
        raise BadRowError(f"{where}: field 'answer' is empty")
    solution = row.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise BadRowError(f"{where}: field 'solution' must be a string, got {type(solution).__name__}")
    target = row.get("target")
    if target is not None and target != "verbatim":
        raise BadRowError(
            f"{where}: field 'target' must be 'verbatim' (the solution is the whole SFT target) or absent, "
            f"got {target!r}"
        )
    if target and not solution:
        raise BadRowError(f"{where}: field 'target' is 'verbatim' but the row has no 'solution'")
    meta = {k: row[k] for k in ("level", "subject", "source", "target") if row.get(k) is not None}
    return Problem(str(row.get("id", index)), problem, str(answer), solution, meta)


def _code_problem(row: dict[str, Any], where: str, index: int) -> Problem:
    for name in ("prompt", "tests", "entry_point"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise BadRowError(f"{where}: code row needs a non-empty string field {name!r}")
    try:
        parse_suite(row["tests"], row["entry_point"])
    except ValueError as err:
        raise BadRowError(f"{where}: field 'tests': {err}") from err
    prompt, tests, entry, solution = row["prompt"], row["tests"], row["entry_point"], row.get("canonical_solution")
    if _is_code(prompt):
        problem = f"Complete this Python function:\n```python\n{prompt.strip()}\n```"
        solution = prompt + solution if solution else None
    else:
        first_test = next((line for line in tests.splitlines() if line.startswith("assert")), "")
        problem = f"{prompt.strip()}\nYour code should pass tests like this one:\n```python\n{first_test}\n```"
    meta = {"entry_point": entry, **({"source": row["source"]} if row.get("source") else {})}
    return Problem(str(row.get("id", index)), problem, reference(tests, entry), solution, meta)


def _is_code(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def _json_rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value or `BadRowError`) per non-blank line of a JSON Lines file; a
    ``.json`` file holding one JSON array gives (element number, element) instead.

    Bytes that are not valid UTF-8 are decoded as lone surrogates (``surrogateescape``), so the
    row holding them is reported by `_check_text` instead of failing the whole file.

    Raises:
        ValueError: a ``.json`` array file that is not valid JSON (position in the message).
    """
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    rows: list[tuple[int, Any]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            rows.append((number, BadRowError(f"{path}: row {number}: not valid JSON (column {err.colno}: {err.msg})")))
    return rows


def _rows(source: str, split: str) -> list[tuple[int, Any]]:
    """(row number, row or `BadRowError`) for every row of `source` (not ``arithmetic``).

    Raises:
        FileNotFoundError: an unknown vendored name, a missing file, or a name that is neither a
            file nor a loadable hub dataset (the message says what was looked for).
    """
    if source.startswith("vendored:"):
        name = source.split(":", 1)[1]
        if name not in VENDORED:
            raise FileNotFoundError(f"unknown vendored dataset {name!r}; known: {', '.join(VENDORED)}")
        source = str(VENDORED_DIR / f"{name}.jsonl")
    path = Path(source).expanduser()
    if path.suffix in (".jsonl", ".json", ".parquet"):
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {source} (looked for {path.resolve()})")
        if path.suffix != ".parquet":
            return _json_rows(path)
    import datasets

    if path.suffix == ".parquet":
        return list(enumerate(datasets.load_dataset("parquet", data_files=str(path), split="train"), start=1))
    try:
        ds = datasets.load_dataset(source, split=split)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as err:
        raise FileNotFoundError(
            f"dataset {source!r}: no such file (looked for {path.resolve()}) "
            "and not loadable as a Hugging Face dataset "
            f"(split {split!r}): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    return list(enumerate(ds, start=1))


def validated_rows(
    source: str, split: str, validate: Callable[[Any, str, int, int], T], on_bad_row: str = "error"
) -> list[T]:
    """Every row of `source` (not ``arithmetic``) through `validate` (row, source, 0-based index,
    row number) -> record, which raises `BadRowError` on a bad row.

    Raises:
        BadRowError: a bad row, with ``on_bad_row="error"``; with ``"skip"`` bad rows are dropped
            and one warning names every bad row number and the first reasons.
        FileNotFoundError: the source cannot be found (`_rows`).
        ValueError: no usable row.
    """
    records, bad = [], []
    rows = _rows(source, split)
    for i, (number, row) in enumerate(rows):
        try:
            if isinstance(row, BadRowError):
                raise row
            records.append(validate(row, source, i, number))
        except BadRowError as err:
            if on_bad_row != "skip":
                raise
            bad.append((number, str(err)))
    if bad:
        numbers = ", ".join(str(n) for n, _ in bad[:50]) + (", ..." if len(bad) > 50 else "")
        reasons = "; ".join(msg.split(": ", 1)[1] for _, msg in bad[:5])
        log.warning(
            "%s: skipped %d bad row(s) of %d: rows %s (%s%s)",
            source,
            len(bad),
            len(rows),
            numbers,
            reasons,
            "; ..." if len(bad) > 5 else "",
        )
    if not records:
        raise ValueError(f"{source}: no usable rows ({len(rows)} rows, {len(bad)} bad and skipped)")
    return records


def load_problems(
    source: str,
    *,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    levels: Sequence[int] = (2,),
    exclude: Sequence[str] = (),
    on_bad_row: str = "error",
    terse_fraction: float = 0.0,
    tool_fraction: float = 0.0,
) -> list[Problem]:
    """Load, validate and (seeded) shuffle problems; keep the first `n` if given.

    Args:
        source: see the module docstring.
        split: HF split name (ignored for files and ``arithmetic``).
        n: number of problems to keep (required for ``arithmetic``).
        seed: shuffling / generation seed.
        levels: arithmetic difficulty levels.
        exclude: problem texts to leave out (keeps held-out problems out of training).
        on_bad_row: ``"error"`` raises `BadRowError`; ``"skip"`` drops bad rows with a warning
            naming them.
        terse_fraction: ``arithmetic`` only: share of worked solutions in the terse style.
        tool_fraction: ``arithmetic`` only: share of problems with a tool-call demonstration.

    Raises:
        BadRowError: a bad row, with ``on_bad_row="error"`` (names source, row and field).
        FileNotFoundError: the source cannot be found (says what was looked for).
        ValueError: no usable row, or a generated source (`GENERATED`) without `n`.
    """
    if source in GENERATED and n is None:
        raise ValueError(f"the {source!r} source needs a problem count n")
    if source == "arithmetic":
        return arithmetic.generate(n, levels, seed, exclude, terse_fraction, tool_fraction)
    if source == "multihop":
        return multihop.problems(multihop.default_world(), n, seed, exclude)
    problems = validated_rows(source, split, _validate, on_bad_row)
    excluded = set(exclude)
    problems = [p for p in problems if p.problem not in excluded]
    random.Random(seed).shuffle(problems)
    return problems if n is None else problems[:n]
