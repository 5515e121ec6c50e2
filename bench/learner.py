"""Learner speed and the memory of log-prob computation.

    python -m bench.learner [--sequences 64] [--prompt-tokens 48] [--completion-tokens 128] [--repeats 3]

Method, every configuration in its own process (peak RSS is per process):
- **update**: `reasoner.learner.Learner.update` (GRPO defaults: one optimizer step, token-mean
  loss, no KL; bf16 autocast, fp32 weights and AdamW state) of the embedded default
  (SmolLM2-135M-Instruct) on `--sequences` sequences (groups of 8 sharing a prompt, as in GRPO) of `--prompt-tokens`
  prompt + `--completion-tokens` completion tokens (random token ids, random 0/1 rewards), with
  ``trainer.micro_batch_size`` = all sequences (no micro-batching) and 16 and 4 (gradient
  accumulation; the loss normalizers are the whole batch's), with ``trainer.reuse_heap`` on
  (`reasoner.jobs.common.reuse_heap`, as the trainer runs) and, for micro-batches of 16, off (glibc's
  default: every large block mapped afresh, the fix this measures). One warm-up update, then
  `--repeats` timed. tokens/s = completion tokens / update seconds (forward + backward +
  optimizer step).
- **log-prob memory**: the no-grad log-probs of the same batch under bf16 autocast (the
  learner's old / reference pass), by (a) the naive route, ``model(ids).logits.float()``,
  log softmax and gather over the whole batch, which builds the (N, L, V) fp32 logits; (b)
  `reasoner.logprobs.completion_logprobs` on the whole batch (LM head on completion positions
  only: (M, V)); (c) the same in micro-batches of 8 (as the learner runs it). Memory = peak
  RSS (VmHWM, reset just before through ``/proc/self/clear_refs``) during the computation
  minus the RSS just before (MB). The update's peak RSS is measured the same way, from after
  the model and learner are built (it includes the weights, gradients and AdamW state).
Written to ``bench/results/learner.json`` and the "Learner" section of BENCHMARKS.md.

    python -m bench.learner --sweep [--lengths 128,512,2048,4096] [--token-budget 8192] [--before-tree DIR]

**Long chain-of-thought sweep**, every configuration in its own process: one update of the
embedded default on a single micro-batch of n = max(1, budget // (16 + length)) sequences of
16 prompt + `length` completion tokens (the same token budget at every length), advantages
+1 / -1 (every sequence trained), GRPO defaults, without ``reuse_heap`` (glibc hands large
blocks back, so RSS follows what is live). A one-sequence update first allocates the AdamW
state; then memory = peak RSS during the measured update minus the RSS just before (gradients,
activations, logits: what grows with the batch), and seconds = that update's. Variants:
``default`` (today's trainer settings) and ``gradient checkpointing``; with `--before-tree`, also
``before``: the same children run in that checkout (it must hold this file), for the learner as
it was. MFU (model FLOP utilization) = 6 x parameters x completion tokens per second / the
machine's matmul throughput, measured in the same run (square fp32 and bf16 ``torch.matmul``s
of 2048 in fp32, 512 in bf16, 2 n^3 FLOPs each) against the dtype the learner computes in here. Written to
``bench/results/learner_sweep.json`` and the "Learner: long chain-of-thought memory and MFU"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

from bench.report import ROOT, child_result, machine, machine_line, print_result, save, spread, table

GROUP = 8


def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e6


def _reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5), so
    that a later `_peak_mb` covers only what ran since (model loading peaks higher)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    """Peak RSS (VmHWM) of this process since the last `_reset_peak`, MB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kb * 1024 / 1e6


def _batch(n: int, prompt: int, completion: int, vocab: int, group: int = GROUP):
    """n random sequences in groups of `group` sharing a prompt; rewards alternate 1, 0, so that
    every group has a nonzero advantage (none is left out of the update)."""
    import torch

    from reasoner.types import TrainBatch

    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, vocab, (n // group + 1, prompt), generator=g)
    completions = torch.randint(0, vocab, (n, completion), generator=g)
    seqs = [prompts[i // group].tolist() + completions[i].tolist() for i in range(n)]  # a group shares its prompt
    rewards = torch.tensor([float(i % 2) for i in range(n)])
    return TrainBatch(seqs, [prompt] * n, rewards, group, [[] for _ in range(n)], [False] * n)


def measure_update(n: int, prompt: int, completion: int, micro: int, repeats: int, reuse: bool) -> dict:
    """Run in a child process: seconds per update with micro-batches of `micro` sequences,
    with or without `reasoner.jobs.common.reuse_heap`."""
    from reasoner.config import AlgorithmConfig, TrainerConfig
    from reasoner.jobs.common import reuse_heap
    from reasoner.learner import Learner
    from reasoner.models import load_policy, resolve_model_path
    from reasoner.rl_step import estimate_advantages

    if reuse:
        reuse_heap()
    model = load_policy(resolve_model_path("embedded:smollm2-135m"), "cpu")  # as the trainer builds it
    batch = _batch(n, prompt, completion, model.config.vocab_size)
    algo = AlgorithmConfig()
    learner = Learner(model, algo, TrainerConfig(micro_batch_size=micro), 0, temperature=1.0, max_tokens=completion)
    batch = estimate_advantages(learner.score(batch), algo, learner.kl_coef)
    _reset_peak()
    seconds = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        learner.update(batch)
        if i:
            seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "tokens": n * completion, "peak_rss_mb": _peak_mb()}


SWEEP_PROMPT = 16
#: sweep variant -> TrainerConfig overrides (``before`` runs ``default`` in the --before-tree)
VARIANTS = {"default": {}, "gradient checkpointing": {"gradient_checkpointing": True}}


def measure_long(length: int, budget: int, trainer: dict) -> dict:
    """Run in a child process: peak RSS growth (MB) and seconds of one update on one micro-batch
    of max(1, budget // (16 + length)) sequences of `length` completion tokens."""
    import torch

    from reasoner.config import AlgorithmConfig, TrainerConfig
    from reasoner.jobs.common import release_free_heap
    from reasoner.learner import Learner
    from reasoner.logprobs import fast_bf16_cpu
    from reasoner.models import load_policy, resolve_model_path

    model = load_policy(resolve_model_path("embedded:smollm2-135m"), "cpu")  # as the trainer builds it
    n = max(1, budget // (SWEEP_PROMPT + length))
    vocab = model.config.vocab_size
    learner = Learner(
        model, AlgorithmConfig(), TrainerConfig(micro_batch_size=n, **trainer), 0, temperature=1.0, max_tokens=length
    )

    def signed(batch):
        adv = [
            torch.full((len(s) - p,), 1.0 if i % 2 else -1.0)
            for i, (s, p) in enumerate(zip(batch.sequences, batch.prompt_lens))
        ]
        return replace(batch, advantages=adv)

    learner.update(signed(_batch(1, SWEEP_PROMPT, 16, vocab, group=1)))  # allocates the AdamW state
    batch = signed(_batch(n, SWEEP_PROMPT, length, vocab, group=min(GROUP, n)))
    release_free_heap()
    before = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    learner.update(batch)
    seconds = time.perf_counter() - start
    dtype = "bfloat16" if learner.trainer.bf16_autocast and fast_bf16_cpu() else "float32"
    return {
        "length": length,
        "sequences": n,
        "completion_tokens": n * length,
        "seconds": seconds,
        "peak_growth_mb": _peak_mb() - before,
        "parameters": sum(p.numel() for p in model.parameters()),
        "compute_dtype": dtype,
    }


def matmul_sizes() -> dict[str, int]:
    """Square matmul size per dtype: 2048, but 512 for bf16 on a CPU without fast bf16 kernels
    (`reasoner.logprobs.fast_bf16_cpu`), where it runs ~300x slower than fp32."""
    from reasoner.logprobs import fast_bf16_cpu

    return {"float32": 2048, "bfloat16": 2048 if fast_bf16_cpu() else 512}


def matmul_tflops(repeats: int = 3) -> dict[str, float]:
    """This machine's dense matmul throughput, TFLOP/s, in float32 and bfloat16: square
    ``torch.matmul`` of `matmul_sizes` (2 n^3 FLOPs per product), median of `repeats` after one
    warm-up."""
    import torch

    out = {}
    for name, size in matmul_sizes().items():
        dtype = getattr(torch, name)
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            torch.matmul(a, b)
            if i:
                times.append(time.perf_counter() - start)
        out[name] = 2 * size**3 / sorted(times)[len(times) // 2] / 1e12
    return out


def sweep(lengths: list[int], budget: int, before_tree: Path | None) -> None:
    """The long chain-of-thought sweep and MFU (module docstring); writes its BENCHMARKS.md section."""
    variants = {**({"before": {}} if before_tree else {}), **VARIANTS}
    runs = {
        name: [
            child_result(
                "bench.learner",
                ["--child-long", str(length), "--token-budget", str(budget), "--child-trainer", json.dumps(overrides)],
                cwd=before_tree if name == "before" else ROOT,
            )
            for length in lengths
        ]
        for name, overrides in variants.items()
    }
    peak = matmul_tflops()
    info = machine()
    header = "| completion length | sequences | " + " | ".join(f"{v}: MB" for v in variants) + " |"
    lines = [header, "|" + "---:|" * (2 + len(variants))]
    for k, length in enumerate(lengths):
        first = runs[next(iter(variants))][k]
        cells = " | ".join(f"{runs[v][k]['peak_growth_mb']:.0f}" for v in variants)
        lines.append(f"| {length} | {first['sequences']} | {cells} |")
    dtype, sizes = runs["default"][0]["compute_dtype"], matmul_sizes()
    speed = [f"| variant | completion length | completion tokens/s | MFU vs the {dtype} peak |", "|---|---:|---:|---:|"]
    for name, rs in runs.items():
        for r in rs:
            tps = r["completion_tokens"] / r["seconds"]
            mfu = 6 * r["parameters"] * tps / (peak[r["compute_dtype"]] * 1e12)
            speed.append(f"| {name} | {r['length']} | {tps:.0f} | {100 * mfu:.1f}% |")
    save(
        "learner_sweep",
        {"lengths": lengths, "token_budget": budget, "runs": runs, "matmul_tflops": peak, "machine": info},
        "Learner: long chain-of-thought memory and MFU (`bench/learner.py --sweep`)",
        f"`python -m bench.learner --sweep --lengths {','.join(map(str, lengths))} --token-budget {budget}"
        f"{' --before-tree ' + str(before_tree) if before_tree else ''}`\n\n"
        f"One update of the embedded SmolLM2-135M-Instruct on one micro-batch of {budget} tokens at most "
        f"(n sequences of {SWEEP_PROMPT} prompt + L completion tokens), every sequence trained; each cell its own "
        f"process. Peak RSS growth during the update (gradients, activations, logits; the weights and AdamW "
        f"state were allocated before), MB. {machine_line(info)}\n\n"
        + "\n".join(lines)
        + f"\n\nMatmul throughput measured in the same run (square products of {sizes['float32']} in fp32 and "
        f"{sizes['bfloat16']} in bf16, median of 3): fp32 {peak['float32']:.4f} TFLOP/s, bf16 "
        f"{peak['bfloat16']:.4f} TFLOP/s. The learner computes in {dtype} here. "
        f"MFU = 6 x {runs['default'][0]['parameters'] / 1e6:.0f}M "
        "parameters x completion tokens/s / the peak of that dtype:\n\n" + "\n".join(speed) + "\n",
    )


def measure_logprobs(n: int, prompt: int, completion: int, route: str) -> dict:
    """Run in a child process: peak RSS growth (MB) and seconds of one no-grad log-prob pass."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasoner.logprobs import autocast, completion_logprobs, pad_batch
    from reasoner.models import resolve_model_path

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path("embedded:smollm2-135m"), dtype=torch.float32
    ).eval()
    batch = _batch(n, prompt, completion, model.config.vocab_size)
    with torch.no_grad(), autocast(True):  # warm-up on 2 sequences: kernels, allocator
        completion_logprobs(model, pad_batch(batch.sequences[:2], batch.prompt_lens[:2], 0))
    parts = [list(range(s, min(s + 8, n))) for s in range(0, n, 8)] if route == "micro-batched" else [list(range(n))]
    before = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    with torch.no_grad(), autocast(True):
        for idx in parts:
            padded = pad_batch([batch.sequences[i] for i in idx], [prompt] * len(idx), 0)
            if route == "naive":
                logits = model(
                    input_ids=padded.input_ids, attention_mask=padded.attention_mask
                ).logits.float()  # (N, L, V)
                lp = (
                    torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, padded.input_ids[:, 1:, None]).squeeze(-1)
                    * padded.target_mask
                )
            else:
                lp, _ = completion_logprobs(model, padded)
            del lp
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_growth_mb": _peak_mb() - before}


#: name -> (micro-batch size, 0 = all sequences; trainer.reuse_heap)
MICRO = {
    "no micro-batching": (0, True),
    "micro-batches of 16": (16, True),
    "micro-batches of 4": (4, True),
    "micro-batches of 16, reuse_heap=false": (16, False),
}
ROUTES = {
    "naive: full (N, L, V) fp32 logits": "naive",
    "completion positions only, whole batch": "whole",
    "completion positions only, micro-batches of 8": "micro-batched",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=48)
    parser.add_argument("--completion-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-update", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-reuse-heap", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-logprobs", choices=sorted(set(ROUTES.values())), help=argparse.SUPPRESS)
    parser.add_argument("--sweep", action="store_true", help="the long chain-of-thought memory sweep and MFU")
    parser.add_argument("--lengths", default="128,512,2048,4096")
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--before-tree", type=Path, help="a checkout of the learner before (holding this file)")
    parser.add_argument("--child-long", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-trainer", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_long is not None:
        print_result(measure_long(args.child_long, args.token_budget, json.loads(args.child_trainer)))
        return
    if args.sweep:
        sweep([int(x) for x in args.lengths.split(",")], args.token_budget, args.before_tree)
        return
    shape = (args.sequences, args.prompt_tokens, args.completion_tokens)
    if args.child_update is not None:
        print_result(measure_update(*shape, args.child_update, args.repeats, bool(args.child_reuse_heap)))
        return
    if args.child_logprobs:
        print_result(measure_logprobs(*shape, args.child_logprobs))
        return
    common = [
        "--sequences",
        str(args.sequences),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--completion-tokens",
        str(args.completion_tokens),
        "--repeats",
        str(args.repeats),
    ]
    updates = {
        name: child_result(
            "bench.learner",
            [*common, "--child-update", str(mb or args.sequences), "--child-reuse-heap", str(int(reuse))],
        )
        for name, (mb, reuse) in MICRO.items()
    }
    memory = {
        name: [child_result("bench.learner", [*common, "--child-logprobs", route]) for _ in range(args.repeats)]
        for name, route in ROUTES.items()
    }
    info = machine()
    rows = []
    for name, r in updates.items():
        rows.append((f"update, {name}: completion tokens/s", spread([r["tokens"] / s for s in r["seconds"]])))
    for name, r in updates.items():
        rows.append((f"update, {name}: peak RSS, MB", spread([r["peak_rss_mb"]])))
    for name, runs in memory.items():
        rows.append((f"no-grad log-probs, {name}: peak RSS growth, MB", spread([r["peak_growth_mb"] for r in runs])))
        rows.append((f"no-grad log-probs, {name}: s", spread([r["seconds"] for r in runs])))
    n, p, c = shape
    naive_gb = n * (p + c) * 49152 * 4 / 1e9
    result = {
        "shape": {"sequences": n, "prompt_tokens": p, "completion_tokens": c},
        "update": updates,
        "logprob_memory": memory,
        "machine": info,
    }
    body = (
        f"`python -m bench.learner --sequences {n} --prompt-tokens {p} --completion-tokens {c} "
        f"--repeats {args.repeats}`\n\n"
        f"Batch: {n} sequences (groups of {GROUP}) of {p} prompt + {c} completion tokens, "
        f"embedded SmolLM2-135M-Instruct, "
        f"GRPO update (bf16 autocast, fp32 weights and AdamW state); every configuration in its own process; "
        f"{args.repeats} timed updates after one warm-up; log-prob memory over {args.repeats} processes. "
        f"{machine_line(info)}\n\n"
        + table(rows)
        + f"\n\nFor scale: the full fp32 logits of this batch are {n} x {p + c} x 49,152 x 4 B = {naive_gb:.2f} GB; "
        "the learner never builds them (LM head on completion positions only, one micro-batch at a time).\n"
    )
    save("learner", result, "Learner (`bench/learner.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
