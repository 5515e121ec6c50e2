"""Weight sync: seconds per in-memory sync of the learner's weights into the rollout engine, and
bytes moved.

    python -m bench.sync [--repeats 5]

Method: each backend in its own process builds its engine on the embedded default
(SmolLM2-135M-Instruct) and an fp32 learner copy (`AutoModelForCausalLM`, as the trainer holds
it), perturbs the learner's weights (so every sync carries new values), then times
`--repeats` calls of `reasoner.rollout.base.sync_weights` (vLLM: the model runner's
``reload_weights`` from the tensors + prefix-cache reset; transformers: in-place copies), and
separately the log-prob check the trainer runs at its checked steps (`check_sync` on a 128-token
probe). Bytes moved = the tensors handed to the engine (`named_weights`: every parameter
in fp32, plus the tied LM head under its own name); the engine converts them to its dtype.
Written to ``bench/results/sync.json`` and the "Weight sync" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

from bench.report import child_result, machine, machine_line, print_result, save, spread, table


def measure(backend: str, repeats: int) -> dict:
    """Run in a child process: seconds per sync and per check, bytes per sync."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasoner.config import Backend, RolloutConfig
    from reasoner.logprobs import sequence_logprobs
    from reasoner.models import resolve_model_path
    from reasoner.rollout import make_engine
    from reasoner.rollout.sync import SyncProbe, check_sync, named_weights, push_weights, sync_drift

    path = resolve_model_path("embedded:smollm2-135m")
    engine = make_engine(Backend(backend), path, RolloutConfig(backend=Backend(backend), max_model_len=1024), seed=0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    sent = sum(t.numel() * t.element_size() for _, t in named_weights(model))
    probe = SyncProbe(list(range(1000, 1128)), 64)
    logprobs = partial(sequence_logprobs, model)
    probe.baseline = sync_drift(engine, logprobs, probe)  # the floor with identical weights, as the trainer takes it
    syncs, checks = [], []
    for i in range(repeats + 1):  # the first sync is a warm-up
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + 1e-4 * (-1) ** i)
        start = time.perf_counter()
        push_weights(engine, named_weights(model))
        synced = time.perf_counter()
        check_sync(engine, logprobs, probe, tol=0.05)
        checked = time.perf_counter()
        if i:
            syncs.append(synced - start)
            checks.append(checked - synced)
    return {"sync_s": syncs, "check_s": checks, "bytes": sent, "tensors": sum(1 for _ in named_weights(model))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["vllm", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print_result(measure(args.child, args.repeats))
        return
    runs = {
        backend: child_result("bench.sync", ["--child", backend, "--repeats", str(args.repeats)])
        for backend in ("vllm", "hf")
    }
    info = machine()
    rows, result = [], {"machine": info}
    for backend, label in (("vllm", "vLLM"), ("hf", "transformers")):
        r = runs[backend]
        sync, check = spread(r["sync_s"]), spread(r["check_s"])
        gbps = spread([r["bytes"] / s / 1e9 for s in r["sync_s"]])
        rows += [
            (f"{label}: sync, s", sync),
            (f"{label}: sync, GB/s moved", gbps),
            (f"{label}: log-prob check after it, s", check),
        ]
        result[backend] = {"sync_s": sync, "check_s": check, "bytes": r["bytes"], "tensors": r["tensors"]}
    mb = runs["vllm"]["bytes"] / 1e6
    body = (
        f"`python -m bench.sync --repeats {args.repeats}`\n\n"
        f"Each sync hands {runs['vllm']['tensors']} tensors, {mb:.1f} MB (fp32 policy of SmolLM2-135M-Instruct, "
        f"the tied LM head sent under its own name too) to the engine, in memory. One warm-up sync, then "
        f"{args.repeats} timed; the learner's weights change before each. {machine_line(info)}\n\n" + table(rows) + "\n"
    )
    save("sync", result, "Weight sync (`bench/sync.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
