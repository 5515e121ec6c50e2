"""Attention in bf16 or in fp32 when the learner trains on the CPU under bf16 autocast.

    python -m bench.attention [--repeats 10] [--model embedded:smollm2-135m]

Method, in one process, nothing else running:
- **kernel**: torch's ``scaled_dot_product_attention`` forward and backward on the shapes of
  one GRPO group of the peer workload (`bench.peer`) in the embedded default (9 query heads,
  head size 64): the completion pass, 8 rows x 40 queries over 62 cached prompt + 40 completion
  keys with an explicit boolean mask (as transformers passes it), and the prompt pass, 1 x 62
  causal queries; inputs in bf16, then the same in fp32. Milliseconds, median of `--repeats`
  after 2 warm-ups.
- **update**: `reasoner.learner.Learner.update` (GRPO defaults, bf16 autocast, prompt sharing)
  of the policy as `reasoner.models.load_policy` builds it on the CPU, on one group of 8
  completions (a chat-templated level-2 arithmetic prompt, then 20-49 random tokens, seeded;
  rewards 1, 0, 1, ... so every row is trained), with transformers' ``sdpa`` and with
  `reasoner.attention.SDPA_FP32`, the two alternating update by update
  (``set_attn_implementation``) after one warm-up of each; seconds, min / median / max of
  `--repeats` each.
Written to ``bench/results/attention.json`` and the "Attention on the CPU" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.report import machine, machine_line, save, spread, table


def kernel_ms(shape: tuple[int, int, int, int], keys: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Median (forward, backward) milliseconds of SDPA with `shape` (B, H, Lq, D) queries over
    `keys` keys, the last Lq of them causal to the queries (a boolean mask when keys > Lq)."""
    b, h, lq, d = shape
    q = torch.randn(b, h, lq, d, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(b, h, keys, d, dtype=dtype, requires_grad=True) for _ in range(2))
    mask = torch.ones(lq, keys, dtype=torch.bool).tril(keys - lq) if keys > lq else None
    fwd, bwd = [], []
    for i in range(repeats + 2):
        start = time.perf_counter()
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        mid = time.perf_counter()
        out.sum().backward()
        if i >= 2:
            fwd.append((mid - start) * 1e3)
            bwd.append((time.perf_counter() - mid) * 1e3)
    return statistics.median(fwd), statistics.median(bwd)


def group_batch(tokenizer, lengths: tuple[int, int] = (20, 50)):
    """One group of 8: a level-2 arithmetic prompt, then random completions of a length drawn
    from [lengths[0], lengths[1]) tokens each (seeded)."""
    from reasoner.data import load_problems
    from reasoner.prompts import Template, prompt_ids
    from reasoner.types import TrainBatch

    problem = load_problems("arithmetic", n=1, seed=3, levels=[2])[0]
    prompt = prompt_ids(tokenizer, problem.problem, Template.plain)
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(*lengths, (8,), generator=g).tolist()
    seqs = [prompt + torch.randint(0, tokenizer.vocab_size, (n,), generator=g).tolist() for n in sizes]
    rewards = torch.tensor([float(i % 2) for i in range(8)])
    return TrainBatch(seqs, [len(prompt)] * 8, rewards, 8, [[] for _ in seqs], [False] * 8)


def update_seconds(model_path: str, repeats: int) -> dict[str, list[float]]:
    """Seconds per update of one group with each attention implementation, alternating."""
    from reasoner.attention import SDPA_FP32
    from reasoner.config import AlgorithmConfig, TrainerConfig
    from reasoner.jobs.common import reuse_heap
    from reasoner.learner import Learner
    from reasoner.models import load_policy, load_tokenizer, resolve_model_path
    from reasoner.rl_step import estimate_advantages

    reuse_heap()
    path = resolve_model_path(model_path)
    model = load_policy(path, "cpu")
    algo = AlgorithmConfig()
    learner = Learner(model, algo, TrainerConfig(), 0, temperature=1.0, max_tokens=128)
    batch = estimate_advantages(learner.score(group_batch(load_tokenizer(path))), algo, learner.kl_coef)
    seconds: dict[str, list[float]] = {"sdpa": [], SDPA_FP32: []}
    for i in range(repeats + 1):
        for impl in seconds:
            model.set_attn_implementation(impl)
            start = time.perf_counter()
            learner.update(batch)
            if i:
                seconds[impl].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--model", default="embedded:smollm2-135m")
    args = parser.parse_args()
    shapes = {
        "completion pass (8 x 9 x 40 over 102 keys)": ((8, 9, 40, 64), 102),
        "prompt pass (1 x 9 x 62)": ((1, 9, 62, 64), 62),
    }
    kernels = {
        f"{name}, {str(dt).removeprefix('torch.')}": kernel_ms(shape, keys, dt, args.repeats)
        for name, (shape, keys) in shapes.items()
        for dt in (torch.bfloat16, torch.float32)
    }
    updates = update_seconds(args.model, args.repeats)
    info = machine()
    lines = "\n".join(f"| {name} | {f:.2f} | {b:.2f} |" for name, (f, b) in kernels.items())
    rows = [(f"update of one group, attention `{impl}`: s", spread(v)) for impl, v in updates.items()]
    (plain, fp32) = (statistics.median(v) for v in updates.values())
    body = (
        f"`python -m bench.attention --repeats {args.repeats} --model {args.model}`\n\n"
        "The learner trains under bf16 autocast; on the CPU its attention inputs are upcast to fp32 "
        "(`reasoner.attention`). Method: `bench/attention.py`'s docstring. "
        f"{machine_line(info)}\n\n"
        "| SDPA kernel, inputs | forward ms | backward ms |\n|---|---:|---:|\n"
        f"{lines}\n\n" + table(rows) + f"\n\nUpdate of one group, median: {plain:.3f} s with `sdpa` in bf16, "
        f"{fp32:.3f} s with the attention in fp32 ({(plain - fp32) / plain:.0%} less).\n"
    )
    save(
        "attention",
        {"kernels_ms": kernels, "update_s": updates, "workload": vars(args), "machine": info},
        "Attention on the CPU (`bench/attention.py`)",
        body,
    )
    print(body)


if __name__ == "__main__":
    main()
