"""Rollout speed: generated tokens/s of the vLLM and transformers backends on one workload.

    python -m bench.rollout [--prompts 16] [--samples 8] [--max-tokens 256] [--repeats 3] [--vllm-dtypes auto]

Method: each backend runs in its own process (vLLM binds its OpenMP threads to the cores, which
would also pin a transformers sampler in the same process), builds its engine
(`reasoner.rollout.make_engine`) on the embedded default (SmolLM2-135M-Instruct; vLLM once per
dtype of `--vllm-dtypes`, ``rollout.dtype`` values, ``auto`` as the trainer runs it; transformers
in fp32), generates once untimed (warm-up), then
`--repeats` times the workload: `--prompts` level-2 arithmetic prompts (chat template, plain
template) x `--samples` completions each at temperature 1, top-p 1, at most `--max-tokens`
new tokens. tokens/s = completion tokens generated (EOS ends a completion early; both backends
count the same way) / wall seconds of the ``generate`` call. The result is the min / median
over repeats per backend and the ratio of medians; written to ``bench/results/rollout.json``
and the "Rollout" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

from bench.report import child_result, machine, machine_line, print_result, save, spread, table


def measure(backend: str, dtype: str, prompts: int, samples: int, max_tokens: int, repeats: int) -> dict:
    """Run in a child process: tokens/s of `repeats` generate calls of the workload, and the
    engine's resolved dtype."""
    from reasoner.config import Backend, RolloutConfig, RolloutDtype
    from reasoner.data import load_problems
    from reasoner.models import load_tokenizer, resolve_model_path
    from reasoner.prompts import Template, prompt_ids
    from reasoner.rollout import make_engine

    path = resolve_model_path("embedded:smollm2-135m")
    tokenizer = load_tokenizer(path)
    problems = load_problems("arithmetic", n=prompts, seed=0, levels=[2])
    ids = [prompt_ids(tokenizer, p.problem, Template.plain) for p in problems]
    cfg = RolloutConfig(backend=Backend(backend), max_model_len=1024, dtype=RolloutDtype(dtype))
    engine = make_engine(Backend(backend), path, cfg, seed=0)
    engine.generate(ids[:2], 2, 1.0, 1.0, 16)  # warm-up, untimed
    rates, tokens = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = engine.generate(ids, samples, 1.0, 1.0, max_tokens)
        elapsed = time.perf_counter() - start
        n = sum(len(c.token_ids) for group in out for c in group)
        rates.append(n / elapsed)
        tokens.append(n)
    return {"tokens_per_s": rates, "tokens": tokens, "dtype": str(engine.dtype).removeprefix("torch.")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--vllm-dtypes", default="auto", help="comma-separated rollout.dtype values, one vLLM run each (auto)"
    )
    parser.add_argument("--child", choices=["vllm", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print_result(measure(args.child, args.dtype, args.prompts, args.samples, args.max_tokens, args.repeats))
        return
    shape = [
        "--prompts",
        str(args.prompts),
        "--samples",
        str(args.samples),
        "--max-tokens",
        str(args.max_tokens),
        "--repeats",
        str(args.repeats),
    ]
    dtypes = args.vllm_dtypes.split(",")
    runs = {
        f"vllm ({dtype})": child_result("bench.rollout", ["--child", "vllm", "--dtype", dtype, *shape])
        for dtype in dtypes
    }
    runs["hf"] = child_result("bench.rollout", ["--child", "hf", *shape])
    rates = {name: spread(run["tokens_per_s"]) for name, run in runs.items()}
    ratios = {name: rates[name]["median"] / rates["hf"]["median"] for name in runs if name != "hf"}
    workload = f"{args.prompts} prompts x {args.samples} samples x at most {args.max_tokens} new tokens"
    info = machine()
    result = {
        "workload": workload,
        **{name: {**rates[name], "tokens": run["tokens"], "dtype": run["dtype"]} for name, run in runs.items()},
        "ratio_of_medians_to_hf": ratios,
        "machine": info,
    }
    rows = []
    for d in dtypes:
        name = f"vllm ({d})"
        rows.append((f"vLLM, rollout.dtype={d} ({runs[name]['dtype']}), generated tokens/s", rates[name]))
    body = (
        f"`python -m bench.rollout --prompts {args.prompts} --samples {args.samples} --max-tokens {args.max_tokens} "
        f"--repeats {args.repeats} --vllm-dtypes {args.vllm_dtypes}`\n\n"
        f"Workload: {workload} (level-2 arithmetic prompts, T 1, top-p 1), embedded SmolLM2-135M-Instruct; "
        f"each backend in its own process, one untimed warm-up call, then {args.repeats} timed `generate` calls. "
        f"{machine_line(info)}\n\n"
        + table([*rows, ("transformers `generate` (float32), generated tokens/s", rates["hf"])])
        + "\n\nvLLM / transformers, ratio of medians: "
        + ", ".join(f"**{ratio:.2f}x** ({name})" for name, ratio in ratios.items())
        + ". Tokens generated per call: "
        + ", ".join(f"{name} {run['tokens']}" for name, run in runs.items())
        + ".\n"
    )
    save("rollout", result, "Rollout: vLLM vs transformers backend (`bench/rollout.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
