"""One GRPO optimizer update from a `TrainBatch`, in micro-batches with gradient accumulation.

Simplification, stated: one optimizer step per rollout batch (no PPO epochs), so the policy that
sampled the batch is the policy being updated and the old log-probs are the current ones,
detached (ratio = 1 at the start; the clip matters once PPO epochs are added). This is the
on-policy setting of TRL's GRPOTrainer with ``num_iterations=1``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from reasoner.algorithms import aggregate
from reasoner.algorithms.kl import kl_estimate
from reasoner.algorithms.policy_loss import clipped_surrogate
from reasoner.config import AlgorithmConfig, LossAgg, TrainerConfig
from reasoner.logprobs import completion_logprobs, pad_batch
from reasoner.types import TrainBatch


@dataclass
class UpdateStats:
    """Per-update figures: loss, KL (mean per token, nats), entropy (nats/token), clip fraction,
    gradient norm (before clipping), and mean |sampler - learner| log-prob per token (nats)."""

    loss: float
    kl: float
    entropy: float
    clip_frac: float
    grad_norm: float
    logprob_mismatch: float


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU or CUDA (weights and optimizer state stay fp32)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


class Learner:
    """Owns the policy's optimizer; `update` does one optimizer step.

    Args:
        model: the policy (a transformers causal LM, fp32 weights).
        algo: clip range, loss aggregation, KL settings.
        trainer: lr, weight decay, grad clip, micro-batch size, autocast.
        pad_id: padding token id.
        temperature: the rollout temperature (log-probs are taken at it).
        ref_model: frozen reference policy; required iff ``algo.kl_beta > 0``.
    Raises:
        ValueError: kl_beta > 0 without a reference model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        algo: AlgorithmConfig,
        trainer: TrainerConfig,
        pad_id: int,
        temperature: float = 1.0,
        ref_model: torch.nn.Module | None = None,
    ) -> None:
        if algo.kl_beta > 0 and ref_model is None:
            raise ValueError("algorithm.kl_beta > 0 needs a reference model")
        self.model, self.algo, self.trainer = model, algo, trainer
        self.pad_id, self.temperature, self.ref_model = pad_id, temperature, ref_model
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay, foreach=False
        )  # foreach=False: no full-model temporaries at step time (peak memory)

    def update(self, batch: TrainBatch) -> UpdateStats:
        """One optimizer step on the whole batch (micro-batched); returns its stats."""
        self.model.train()
        total_tokens, total_seqs = batch.completion_tokens, len(batch)
        sums = {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip": 0.0, "mismatch": 0.0, "mismatch_n": 0}
        mb = self.trainer.micro_batch_size
        for start in range(0, total_seqs, mb):
            idx = list(range(start, min(start + mb, total_seqs)))
            padded = pad_batch([batch.sequences[i] for i in idx], [batch.prompt_lens[i] for i in idx], self.pad_id)
            mask = padded.target_mask.float()
            with autocast(self.trainer.bf16_autocast):
                logp, entropy = completion_logprobs(self.model, padded, self.temperature, with_entropy=True)
            adv = batch.advantages[idx].float()[:, None]
            per_token, clipped = clipped_surrogate(logp, logp.detach(), adv, self.algo.clip_low, self.algo.clip_high)
            if self.algo.kl_beta > 0:
                with torch.no_grad(), autocast(self.trainer.bf16_autocast):
                    ref_logp, _ = completion_logprobs(self.ref_model, padded, self.temperature)
                kl = kl_estimate(logp, ref_logp, self.algo.kl_estimator.value)
                per_token = per_token + self.algo.kl_beta * kl
                sums["kl"] += float((kl.detach() * mask).sum())
            if self.algo.loss_agg == LossAgg.token_mean:
                loss = aggregate.token_mean(per_token, mask, total_tokens)
            else:
                loss = aggregate.seq_mean_token_mean(per_token, mask, total_seqs)
            loss.backward()
            sums["loss"] += float(loss.detach())
            sums["entropy"] += float((entropy * mask).sum())
            sums["clip"] += float((clipped.float() * mask).sum())
            for row, i in enumerate(idx):
                sampler = batch.sampler_logprobs[i]
                if sampler:
                    learner = logp.detach()[row][padded.target_mask[row]]
                    n = min(len(sampler), learner.numel())
                    sums["mismatch"] += float((learner[:n] - torch.tensor(sampler[:n])).abs().sum())
                    sums["mismatch_n"] += n
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.trainer.grad_clip)
        finite = bool(torch.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            raise FloatingPointError(f"non-finite gradient norm {float(grad_norm)}; update skipped")
        tokens = max(total_tokens, 1)
        return UpdateStats(
            loss=sums["loss"],
            kl=sums["kl"] / tokens,
            entropy=sums["entropy"] / tokens,
            clip_frac=sums["clip"] / tokens,
            grad_norm=float(grad_norm),
            logprob_mismatch=sums["mismatch"] / max(sums["mismatch_n"], 1),
        )
