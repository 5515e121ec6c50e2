"""Sample and score benchmarks with a rollout engine: the evaluator shared by ``reasoner-eval``
and the periodic evaluation inside ``reasoner-train``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Collection, Sequence

from tqdm import tqdm

from eval.benchmarks import Benchmark, Sampling, get_benchmark
from eval.samples import Key, Sample
from eval.summary import summarize
from reasoner.prompts import prompt_ids
from reasoner.rollout.base import RolloutEngine
from reasoner.types import Completion, Problem
from verifiers.base import Verifier
from verifiers.registry import build_verifier


class Verifiers:
    """The benchmarks' verifiers, each distinct spec built once (on first use) and shared."""

    def __init__(self) -> None:
        self._built: dict[str, Verifier] = {}

    def get(self, bench: Benchmark) -> Verifier:
        """`bench`'s verifier (built on the first request for its spec).

        Raises:
            whatever `verifiers.registry.build_verifier` raises (a bad spec, no sandbox for code).
        """
        spec = json.dumps(bench.verifier, sort_keys=True)
        if spec not in self._built:
            self._built[spec] = build_verifier(bench.verifier)
        return self._built[spec]

    def close(self) -> None:
        """Close every verifier built."""
        for v in self._built.values():
            v.close()
        self._built.clear()


def episode_fields(c: Completion, tokenizer: Any) -> tuple[int, int, int, str]:
    """(turns, tool calls, tool calls that failed, transcript) of an episode `c` (``c.episode`` set)."""
    e = c.episode
    return e.turns, len(e.calls), sum(call.error is not None for call in e.calls), tokenizer.decode(c.token_ids)


def longest_prompt(tokenizer: Any, bench: Benchmark, problems: Sequence[Problem]) -> int:
    """Length of the longest of `problems`' prompts under `bench`'s template, in tokens."""
    return max(len(prompt_ids(tokenizer, p.problem, bench.template)) for p in problems)


def fit_max_tokens(sampling: Sampling, prompt_tokens: int, context: int) -> Sampling:
    """`sampling` with `max_tokens` cut to what fits after a prompt of `prompt_tokens` tokens (the
    longest) in a context of `context` tokens.

    Raises:
        ValueError: the prompt alone leaves no room (context <= prompt_tokens).
    """
    room = context - prompt_tokens
    if room < 1:
        raise ValueError(f"a prompt of {prompt_tokens} tokens leaves no room in the {context}-token context")
    return sampling if sampling.max_tokens <= room else Sampling(sampling.n, sampling.temperature, sampling.top_p, room)


def sample_benchmark(
    engine: RolloutEngine,
    tokenizer: Any,
    bench: Benchmark,
    problems: Sequence[Problem],
    sampling: Sampling,
    verifier: Verifier,
    done: Collection[Key] = (),
    on_samples: Callable[[list[Sample]], None] | None = None,
    chunk: int = 32,
    progress: bool = True,
) -> list[Sample]:
    """Draw and score the samples of `problems` missing from `done`, `chunk` problems per
    engine call, under `bench`'s name and prompt template, judged by `verifier` (for a
    registered benchmark, ``Verifiers.get(bench)``; the training run's held-out evaluation
    passes its reward verifier); `on_samples` gets each scored chunk as soon as it exists (to
    write it out).

    A problem with m of its n samples in `done` gets n - m new ones, numbered with the missing
    indices. Returns the new samples, in order.
    """
    todo = [(p, [i for i in range(sampling.n) if (bench.name, p.id, i) not in done]) for p in problems]
    todo = [(p, missing) for p, missing in todo if missing]
    new: list[Sample] = []
    bar = tqdm(
        total=sum(len(m) for _, m in todo), desc=bench.name, unit="sample", disable=not progress, dynamic_ncols=True
    )
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        tools = getattr(engine, "instructions", "")  # an `reasoner.envs.episodes.EpisodeEngine`'s
        prompts = {p.id: prompt_ids(tokenizer, p.problem, bench.template, tools) for p, _ in part}
        drafts: list[tuple[Problem, int, Completion]] = []
        for count in sorted(Counter(len(m) for _, m in part)):  # one engine call per missing-sample count
            group = [(p, m) for p, m in part if len(m) == count]
            outs = engine.generate(
                [prompts[p.id] for p, _ in group], count, sampling.temperature, sampling.top_p, sampling.max_tokens
            )
            drafts += [(p, i, c) for (p, missing), comps in zip(group, outs) for i, c in zip(missing, comps)]
        verdicts = verifier.verify_batch([(c.text, p.answer) for p, _, c in drafts])
        scored = [
            Sample(
                bench.name,
                p.id,
                i,
                tokenizer.decode(prompts[p.id]),
                c.text,
                c.policy_tokens,
                c.truncated,
                v.correct,
                v.score,
                v.extracted,
                v.reason,
                *(() if c.episode is None else episode_fields(c, tokenizer)),
            )
            for (p, i, c), v in zip(drafts, verdicts)
        ]
        order = {p.id: j for j, (p, _) in enumerate(part)}
        scored.sort(key=lambda s: (order[s.problem_id], s.index))
        if on_samples is not None:
            on_samples(scored)
        new += scored
        bar.update(len(scored))
    bar.close()
    return new


def rescore(
    bench: Benchmark, problems: Sequence[Problem], samples: Sequence[Sample], verifier: Verifier
) -> list[Sample]:
    """`samples` of `bench` (others unchanged) judged again by `verifier`.

    Raises:
        KeyError: a sample of `bench` names a problem not in `problems`.
    """
    by_id = {p.id: p for p in problems}
    mine = [i for i, s in enumerate(samples) if s.benchmark == bench.name]
    verdicts = verifier.verify_batch([(samples[i].completion, by_id[samples[i].problem_id].answer) for i in mine])
    out = list(samples)
    for i, v in zip(mine, verdicts):
        out[i] = samples[i].with_verdict(v)
    return out


class PeriodicEval:
    """Chosen benchmarks on fixed small problem subsets, evaluated again and again with the
    training run's engine (``trainer.eval_benchmarks``); no files, the metrics go to the run's
    metrics stream.

    Args:
        names: registered benchmark names.
        problems: problems per benchmark (the first of the fixed shuffle, as ``reasoner-eval limit=``).
        samples: samples per problem.
        max_tokens: completion budget, tokens (cut to fit `context` after the longest prompt).
        tokenizer: the policy's tokenizer (chat template).
        context: the engine's context length, tokens.

    Raises:
        ValueError: an unknown benchmark name, or a prompt longer than `context`.
    """

    def __init__(
        self, names: Sequence[str], problems: int, samples: int, max_tokens: int, tokenizer: Any, context: int
    ) -> None:
        self.tokenizer = tokenizer
        self.plans = []
        for bench in [get_benchmark(name) for name in names]:
            subset = bench.problems(problems)
            sampling = Sampling(samples, bench.sampling.temperature, bench.sampling.top_p, max_tokens)
            try:
                sampling = fit_max_tokens(sampling, longest_prompt(tokenizer, bench, subset), context)
            except ValueError as err:
                raise ValueError(f"trainer.eval_benchmarks: {bench.name}: {err} (rollout.max_model_len)") from err
            self.plans.append((bench, subset, sampling))
        self.verifiers = Verifiers()

    def __call__(self, engine: RolloutEngine) -> dict[str, float]:
        """Evaluate every benchmark now; flat scalars ``eval/<name>/avg@n``, ``pass@n``,
        ``maj@n`` (voting benchmarks), ``len_mean`` (tokens) and ``truncated`` (fraction)."""
        metrics: dict[str, float] = {}
        for bench, problems, sampling in self.plans:
            samples = sample_benchmark(
                engine, self.tokenizer, bench, problems, sampling, self.verifiers.get(bench), progress=False
            )
            s = summarize(bench, sampling, problems, samples)
            key = f"eval/{bench.name}"
            metrics[f"{key}/avg@{sampling.n}"] = s.avg.value
            metrics[f"{key}/pass@{sampling.n}"] = s.pass_at[sampling.n].value
            if s.maj_at:
                metrics[f"{key}/maj@{sampling.n}"] = s.maj_at[sampling.n].value
            metrics[f"{key}/len_mean"] = s.mean_len
            metrics[f"{key}/truncated"] = s.truncated
        return metrics

    def close(self) -> None:
        """Close the verifiers."""
        self.verifiers.close()
