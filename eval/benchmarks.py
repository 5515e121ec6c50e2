"""Benchmark registry: name -> dataset, prompt template, verifier and default sampling.

Built in (data vendored in ``reasoner/data/vendored``, origins and licenses in its SOURCES.md):

=========  ==============  ======  ===========================================
name       problems        n       verifier
=========  ==============  ======  ===========================================
aime24     30              32      math, boxed answer
aime25     30              32      math, boxed answer
amc23      40              32      math, boxed answer
math500    500             4       math, boxed answer; by level and subject
gsm8k      1,319 (test)    1       math, boxed answer, else the last number
humaneval  164             10      code (all tests must pass)
mbpp       257 (sanitized) 10      code (all tests must pass)
=========  ==============  ======  ===========================================

Every built-in samples at temperature 0.6, top-p 0.95, up to 32,768 new tokens (the protocol of
DeepSeek-R1, arXiv:2501.12948, Sec. 3.1: pass@1 as the mean accuracy of k samples at
T = 0.6, top-p 0.95; the evaluator caps the tokens at the model's context). Math prompts are the
model's chat template with "Please reason step by step, and put your final answer within
\\boxed{}." after the problem (`reasoner.config.Template.plain`); code prompts ask for a
```python block (`Template.code`).

Other packages add benchmarks under the ``reasoner.benchmarks`` entry-point group, as verifiers
do under ``reasoner.verifiers``; each entry point names a `Benchmark` (or a function with no
arguments returning one)::

    [project.entry-points."reasoner.benchmarks"]
    my_bench = "my_package.benchmarks:MY_BENCH"
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

from reasoner.data import load_problems
from reasoner.prompts import Template
from reasoner.types import Problem

ENTRY_POINT_GROUP = "reasoner.benchmarks"

#: the seed of the fixed shuffle a problem subset (``limit``) is taken from: the same problems
#: in every run, so two runs compare problem by problem (paired).
SUBSET_SEED = 0


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn: `n` per problem at `temperature` and `top_p`, each at most
    `max_tokens` new tokens long."""

    n: int
    temperature: float
    top_p: float
    max_tokens: int

    def __post_init__(self) -> None:
        if self.n < 1 or self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ValueError(f"bad sampling {self}: need n >= 1, temperature >= 0, top_p in (0, 1], max_tokens >= 1")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Attributes:
        name: registry name (``aime24``).
        source: a `reasoner.data.load_problems` source (``vendored:aime24``, a JSONL path, an HF id).
        template: the prompt template.
        verifier: a `verifiers.registry.build_verifier` spec (``_target_`` or a registered name).
        sampling: default sampling (the command line may override each field).
        split: HF split, for a hub source.
        breakdown: `Problem.meta` keys the accuracy is also broken down by (``level``).
        vote: whether maj@k applies (samples vote with their extracted answer; off for code,
            where the extracted "answer" is a whole program).
    """

    name: str
    source: str
    template: Template
    verifier: dict[str, Any]
    sampling: Sampling
    split: str = "test"
    breakdown: tuple[str, ...] = ()
    vote: bool = True

    def problems(self, limit: int | None = None) -> list[Problem]:
        """The benchmark's problems, or the first `limit` of a fixed shuffle (`SUBSET_SEED`).

        Raises:
            FileNotFoundError, reasoner.data.BadRowError: the source is missing or malformed.
        """
        return load_problems(self.source, split=self.split, n=limit, seed=SUBSET_SEED)


#: the field's protocol: temperature 0.6, top-p 0.95 (DeepSeek-R1, Sec. 3.1).
def _protocol(n: int) -> Sampling:
    return Sampling(n=n, temperature=0.6, top_p=0.95, max_tokens=32768)


def _math(fallbacks: list[str]) -> dict[str, Any]:
    return {"_target_": "verifiers.math.MathVerifier", "timeout_s": 5.0, "workers": 2, "fallbacks": fallbacks}


_CODE = {"_target_": "verifiers.code.CodeVerifier", "timeout_s": 10.0, "workers": 2, "scoring": "all"}

BUILTIN: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("aime24", "vendored:aime24", Template.plain, _math([]), _protocol(32)),
        Benchmark("aime25", "vendored:aime25", Template.plain, _math([]), _protocol(32)),
        Benchmark("amc23", "vendored:amc23", Template.plain, _math([]), _protocol(32)),
        Benchmark(
            "math500", "vendored:math500", Template.plain, _math([]), _protocol(4), breakdown=("level", "subject")
        ),
        Benchmark("gsm8k", "vendored:gsm8k_test", Template.plain, _math(["phrase", "last_number"]), _protocol(1)),
        Benchmark("humaneval", "vendored:humaneval", Template.code, _CODE, _protocol(10), vote=False),
        Benchmark("mbpp", "vendored:mbpp", Template.code, _CODE, _protocol(10), vote=False),
    )
}


def with_free_form(bench: Benchmark, on: bool) -> Benchmark:
    """`bench` judged with free-form answer extraction (``free_form=True``) when `on` and its
    verifier is the math verifier; otherwise `bench` unchanged."""
    if not on or bench.verifier.get("_target_") != "verifiers.math.MathVerifier":
        return bench
    return replace(bench, verifier={**bench.verifier, "free_form": True})


def registered() -> dict[str, Benchmark]:
    """Every benchmark by name: the built-ins, then those of the ``reasoner.benchmarks`` group.

    Raises:
        ValueError: an entry point reuses a built-in's name, or its name differs from its
            benchmark's.
        TypeError: an entry point yields something other than a `Benchmark`.
    """
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            raise ValueError(
                f"entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r} reuses the built-in benchmark name "
                f"{ep.name!r}"
            )
        obj = ep.load()
        bench = obj() if callable(obj) else obj
        if not isinstance(bench, Benchmark):
            raise TypeError(f"entry point {ep.name} = {ep.value!r} is not a Benchmark (got {type(bench).__name__})")
        if bench.name != ep.name:
            raise ValueError(f"entry point {ep.name!r} names a benchmark called {bench.name!r}")
        found[ep.name] = bench
    return found


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as `name`.

    Raises:
        ValueError: no such benchmark (the message lists the registered ones).
    """
    known = registered()
    if name not in known:
        raise ValueError(f"no benchmark named {name!r}; registered: {', '.join(known)}")
    return known[name]
