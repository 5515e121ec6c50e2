"""One group's RL update with its micro-batch packed into one row, and padded.

    python -m bench.packing [--repeats 8] [--model embedded:smollm2-135m]

Method, in one process, nothing else running: `reasoner.learner.Learner.update` (GRPO defaults,
bf16 autocast, the policy as `reasoner.models.load_policy` builds it on the CPU) of one group of 8
completions (`bench.attention.group_batch`: a chat-templated level-2 arithmetic prompt of 62
tokens, then random completion tokens of seeded lengths in each range below; rewards 1, 0, 1, ...
so every row is trained), with ``trainer.packing`` on (one row, no padding, attention segment by
segment: `reasoner.logprobs.pack_rows`) and off (padded, with prompt sharing's two passes), the two
alternating update by update after one warm-up of each; seconds, min / median / max of
`--repeats` each. Written to ``bench/results/packing.json`` and the "Packing" section of
BENCHMARKS.md.

    python -m bench.packing --gradients [--model ...]

**Gradients**: the gradient of sum(advantage x log-prob) / tokens over one group (the 20-49 token
range above, advantages +1 / -1 alternating) by three routes: the full rows through the whole
model (the reference), the padded rows with prompt sharing, and the packed row; in fp32 and under
bf16 autocast. Printed, with the relative difference ||g - g_full|| / ||g_full|| of each route
and the largest log-prob difference; not written to a file.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.attention import group_batch
from bench.report import machine, machine_line, save, spread, table

#: completion lengths [low, high) of the groups measured: the peer workload's (`bench.peer`),
#: groups of the main job after the cold start (~50 tokens on average, 128 at most), and near its cap
RANGES = ((20, 50), (20, 80), (40, 90), (20, 128), (100, 128))


def update_seconds(model_path: str, repeats: int) -> dict[str, dict]:
    """Per length range: the packed row's tokens, the padded tokens, and seconds per update each way."""
    from reasoner.config import AlgorithmConfig, TrainerConfig
    from reasoner.jobs.common import reuse_heap
    from reasoner.learner import Learner
    from reasoner.logprobs import pack_rows, pad_batch
    from reasoner.models import load_policy, load_tokenizer, resolve_model_path
    from reasoner.rl_step import estimate_advantages

    reuse_heap()
    path = resolve_model_path(model_path)
    model, tokenizer = load_policy(path, "cpu"), load_tokenizer(path)
    algo = AlgorithmConfig()
    learner = Learner(model, algo, TrainerConfig(), 0, temperature=1.0, max_tokens=128)
    out = {}
    for low, high in RANGES:
        batch = estimate_advantages(learner.score(group_batch(tokenizer, (low, high))), algo, learner.kl_coef)
        padded = pad_batch(batch.sequences, batch.prompt_lens, 0)
        seconds: dict[str, list[float]] = {"packed": [], "padded": []}
        for i in range(repeats + 1):
            for mode, packing in (("packed", True), ("padded", False)):
                learner.trainer.packing = packing
                start = time.perf_counter()
                learner.update(batch)
                if i:
                    seconds[mode].append(time.perf_counter() - start)
        out[f"{low}-{high - 1}"] = {
            "packed_tokens": len(pack_rows(padded).input_ids),
            "padded_tokens": batch.prompt_lens[0] + padded.input_ids.numel() - len(batch) * batch.prompt_lens[0],
            "seconds": seconds,
        }
    return out


def gradients(model_path: str) -> None:
    """Print each route's gradient and log-prob difference from the full rows (module docstring)."""
    import torch

    from reasoner.logprobs import autocast, completion_logprobs, pad_batch
    from reasoner.models import load_policy, load_tokenizer, resolve_model_path

    path = resolve_model_path(model_path)
    model = load_policy(path, "cpu")
    group = group_batch(load_tokenizer(path))
    batch = pad_batch(group.sequences, group.prompt_lens, 0)
    adv = torch.tensor([1.0, -1.0] * 4)[:, None]

    def route(kind: str, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        with autocast(bf16):
            if kind == "full rows":
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
                logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
                logp = logp * batch.target_mask
            else:
                logp = completion_logprobs(model, batch, packing=kind == "packed")[0]
        ((logp * adv).sum() / batch.target_mask.sum()).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()]), logp.detach()

    for bf16 in (False, True):
        ref, ref_logp = route("full rows", bf16)
        for kind in ("padded, prompt sharing", "packed"):
            g, logp = route(kind, bf16)
            rel, worst = float((g - ref).norm() / ref.norm()), float((logp - ref_logp).abs().max())
            print(
                f"{'bf16 autocast' if bf16 else 'fp32'}, {kind}: gradient {rel:.2e} of the full rows' "
                f"(norm {float(ref.norm()):.4f}), log-probs {worst:.2e} at most"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--gradients", action="store_true", help="compare the routes' gradients (printed only)")
    args = parser.parse_args()
    if args.gradients:
        gradients(args.model)
        return
    results = update_seconds(args.model, args.repeats)
    info = machine()
    rows, lines = [], []
    for lengths, r in results.items():
        packed, padded = (statistics.median(r["seconds"][k]) for k in ("packed", "padded"))
        rows += [(f"completions of {lengths} tokens, {k}: s", spread(v)) for k, v in r["seconds"].items()]
        lines.append(
            f"| {lengths} | {r['padded_tokens']} | {r['packed_tokens']} | {padded:.3f} | {packed:.3f} "
            f"| {(padded - packed) / padded:+.0%} |"
        )
    body = (
        f"`python -m bench.packing --repeats {args.repeats} --model {args.model}`\n\n"
        "One group's RL update, its micro-batch packed into one row (`trainer.packing`) or padded "
        f"with prompt sharing. Method: `bench/packing.py`'s docstring. {machine_line(info)}\n\n"
        "| completion tokens | tokens run, padded (prompt once) | tokens run, packed | padded: s (median) "
        "| packed: s (median) | packed saves |\n|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(lines)
        + "\n\n"
        + table(rows)
        + "\n"
    )
    save("packing", {"updates": results, "workload": vars(args), "machine": info}, "Packing (`bench/packing.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
