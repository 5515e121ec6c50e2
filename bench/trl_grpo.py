"""TRL's GRPOTrainer on the peer benchmark's workload (`bench.peer`), run as a child process.

    python -m bench.trl_grpo --out DIR --steps 5 [--prompts 2] [--group 8] [--max-tokens 128]
        [--lr 2e-5] [--beta 0.04] [--seed 0] [--model embedded:smollm2-135m] [--vllm]

Needs ``trl`` (``pip install -e '.[bench]'``). Writes ``DIR/steps.jsonl``: one record per
optimizer step with its wall seconds (from the previous step's end, or from the start of
training for step 1) and TRL's logged figures (reward, completion length, KL, ...), then one
record with the process's peak RSS (MB).

The same problems as our run of the workload (`bench.step.problems`), as already
chat-templated prompt strings, so both frameworks see identical prompt tokens; the reward is
our math verifier's score on the completion (the same verifier as our run). Settings mirror
ours: fp32 weights with bf16 autocast, AdamW at a constant learning rate, gradient clipping at
1.0, one optimizer step per generation batch (``num_iterations=1``), group-normalized
advantages with the group std, token-mean loss over the batch (TRL's ``loss_type="dapo"``),
clip epsilon 0.2, k3 KL in the loss with coefficient `--beta`, temperature 1, top-p 1, no
top-k. Generation uses transformers ``generate`` unless `--vllm` (TRL's colocate mode).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--vllm", action="store_true")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bench.step import problems
    from reasoner.models import load_tokenizer, resolve_model_path
    from reasoner.prompts import Template, prompt_ids
    from verifiers.registry import build_verifier

    path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(path)
    rows = problems(args.steps, args.prompts, args.seed)
    data = Dataset.from_list(
        [
            {"prompt": tokenizer.decode(prompt_ids(tokenizer, p.problem, Template.plain)), "answer": p.answer}
            for p in rows
        ]
    )
    verifier = build_verifier({"_target_": "verifiers.math.MathVerifier", "timeout_s": 5.0, "workers": 1})

    def correctness(prompts, completions, answer, **_):
        return [v.score for v in verifier.verify_batch(list(zip(completions, answer)))]

    args.out.mkdir(parents=True, exist_ok=True)
    record = (args.out / "steps.jsonl").open("w")

    class StepClock(TrainerCallback):
        """Wall seconds of each optimizer step, written with the step's logged figures."""

        def on_train_begin(self, *_, **__):
            self.last, self.pending = time.perf_counter(), {}

        def on_step_end(self, _args, state, *_, **__):
            now = time.perf_counter()
            self.pending = {"step": state.global_step, "seconds": now - self.last}
            self.last = now

        def on_log(self, _args, state, _control, logs=None, **__):
            if self.pending and logs:
                record.write(
                    json.dumps({**self.pending, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
                    + "\n"
                )
                record.flush()
                self.pending = {}

    config = GRPOConfig(
        output_dir=str(args.out / "trl"),
        per_device_train_batch_size=args.prompts * args.group,
        gradient_accumulation_steps=1,
        num_generations=args.group,
        max_completion_length=args.max_tokens,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=args.beta,
        epsilon=0.2,
        loss_type="dapo",
        scale_rewards="group",
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        use_cpu=True,
        bf16=True,
        model_init_kwargs={"dtype": torch.float32},
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        use_vllm=args.vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.3,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=path,
        reward_funcs=correctness,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[StepClock()],
    )
    trainer.train()
    record.write(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}) + "\n")
    record.close()
    verifier.close()


if __name__ == "__main__":
    main()
