"""The learner: owns the policy (and reference, critic) and their optimizers, and is the only
code that touches them. The RL step talks to it through `LearnerAPI`:

1. `score(batch)`: one no-gradient pass in micro-batches for what the update must hold fixed:
   old log-probs (only when the policy moves before the batch is used up: several epochs or
   mini-batches, or a KL reward), reference log-probs (β > 0), critic values (when the estimator
   needs a critic). With one epoch and one mini-batch (GRPO's default, TRL's
   ``num_iterations=1``) the policy that sampled the batch is the one being updated, so the old
   log-probs are the current ones, detached, and no extra pass is needed.
2. (the step computes the advantages, `reasoner.rl_step.estimate_advantages`)
3. `update(batch)`: ``ppo_epochs`` passes; each shuffles the batch into ``mini_batches``
   mini-batches and takes one optimizer step per mini-batch, micro-batched with loss normalizers
   counted over the mini-batch, so the gradient does not depend on ``trainer.micro_batch_size``.
4. `export_weights()` for the rollout engine, `sequence_logprobs` for the sync check, `save` /
   `load` for checkpoints, `export_pretrained` for the final model.

The policy loss, its aggregation and the KL estimator are looked up by name in
`reasoner.algorithms.registry`. Only tokens the policy generated (the loss mask) are scored.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from safetensors.torch import load_file, save_model

from reasoner.algorithms import aggregate, registry
from reasoner.algorithms.kl import adaptive_kl_coef
from reasoner.algorithms.policy_loss import truncated_is_weights
from reasoner.algorithms.value import clipped_value_loss
from reasoner.config import AlgorithmConfig, KLPlacement, TrainerConfig
from reasoner.critic import ValueModel
from reasoner.distributed.collective import Collective, Local
from reasoner.distributed.full_state import FullState, full_optimizer_state, load_full_optimizer_state, load_full_state
from reasoner.logprobs import PaddedBatch, Scorer, autocast, pad_batch, sequence_logprobs
from reasoner.models import export_pretrained
from reasoner.rollout.sync import named_weights
from reasoner.types import Rows, TrainBatch

#: module files of a checkpoint, by the learner's module they hold
_MODULES = ("policy.safetensors", "reference.safetensors", "critic.safetensors")
_STATE = "trainer.pt"


@dataclass
class UpdateStats:
    """Per-update figures. Token-weighted means over the first epoch: KL (nats/token, current or
    old policy vs reference), entropy (nats/token), clip fraction, mean |sampler - learner|
    log-prob (nats/token), fraction of tokens whose IS weight hit ``tis_cap``, and the
    importance ratio π_old / π_sampler before the cap (mean over the tokens with sampler
    log-probs, and max: stale samples, ``rollout.max_staleness``, move it off 1) and the mean
    weight applied, min(ratio, ``tis_cap``) (1 with the cap off: no weight is applied). Means over the
    optimizer steps taken: loss, value loss, gradient norm (before clipping). kl_coef is β after
    the update (it moves only with an adaptive target). skipped_steps counts optimizer steps
    skipped for a non-finite loss or gradient norm (not in optimizer_steps); empty_steps counts
    the optimizer steps taken on a zero gradient, with no pass run, because every sequence of
    their mini-batch had a zero advantage (in optimizer_steps: AdamW still moves the weights);
    zero_adv_sequences counts the sequences left out of the first epoch's passes for a zero
    advantage (``trainer.skip_zero_advantage``). The token means cover the sequences run (NaN
    when none ran)."""

    loss: float
    kl: float
    kl_coef: float
    entropy: float
    clip_frac: float
    grad_norm: float
    logprob_mismatch: float
    tis_clip_frac: float
    value_loss: float
    is_ratio_mean: float
    is_ratio_max: float
    is_weight_mean: float
    optimizer_steps: int
    skipped_steps: int = 0
    empty_steps: int = 0
    zero_adv_sequences: int = 0

    @classmethod
    def skipped(cls) -> UpdateStats:
        """No update ran (every mean NaN, every count 0)."""
        means = {f: float("nan") for f in cls.__dataclass_fields__ if f not in COUNTS}
        return cls(**means, optimizer_steps=0)


#: the `UpdateStats` fields that are counts, not means
COUNTS = ("optimizer_steps", "skipped_steps", "empty_steps", "zero_adv_sequences")


class NonFiniteUpdateError(FloatingPointError):
    """Too many consecutive RL steps had a non-finite loss or gradient (``trainer.max_nonfinite_steps``)."""


class LearnerAPI(Protocol):
    """What the RL step, the sync check and checkpoints need from a learner; a sharded
    multi-process learner implements the same methods.

    - ``kl_coef``: β now (it moves with an adaptive target).
    - ``score(batch) -> batch``: the batch with ``old_logp``, ``ref_logp``, ``values`` filled as
      the algorithm needs them.
    - ``update(batch) -> UpdateStats``: train on a batch with advantages.
    - ``export_weights()``: the policy's ``(name, tensor)`` pairs in HF names, for the engine.
    - ``sequence_logprobs(token_ids, prompt_len, bf16)``: the policy's log-probs of one sequence.
    - ``save(path)`` / ``load(path)``: weights and optimizer state to / from a checkpoint directory.
    - ``export_pretrained(path, tokenizer)``: the policy as an HF model directory.
    """

    kl_coef: float

    def score(self, batch: TrainBatch) -> TrainBatch: ...

    def update(self, batch: TrainBatch) -> UpdateStats: ...

    def export_weights(self) -> Iterator[tuple[str, torch.Tensor]]: ...

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int, bf16: bool) -> list[float]: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...

    def export_pretrained(self, path: Path, tokenizer: Any) -> None: ...


def _max_nan(a: float, b: float) -> float:
    """The larger of `a` and `b`, NaN when either is (Python's ``max`` would drop a NaN)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _place(rows: Rows, idx: list[int], mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence rows -> the (n, L-1) layout of a padded micro-batch (zero off `mask`)."""
    out = torch.zeros(mask.shape, dtype=torch.float32)
    out[mask] = torch.cat([rows[i] for i in idx])
    return out


def _put(rows: Rows, idx: list[int], x: torch.Tensor, mask: torch.Tensor) -> None:
    """Store the (n, L-1) micro-batch layout `x` of sequences `idx` as their per-sequence rows."""
    for i, row in zip(idx, x.detach()[mask].split(mask.sum(-1).tolist())):
        rows[i] = row


def companions(policy: torch.nn.Module, algo: AlgorithmConfig) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """(reference, critic) the algorithm needs beside `policy`: a frozen copy when β > 0, a
    `reasoner.critic.ValueModel` on a copy of its decoder when the estimator needs a critic."""
    ref = copy.deepcopy(policy).eval().requires_grad_(False) if algo.kl.beta > 0 else None
    return ref, ValueModel(policy) if algo.needs_critic else None


def _scalar(t: torch.Tensor) -> float:
    """A 0-d tensor's value; for a DTensor (an FSDP2 gradient norm), its value over every rank."""
    return float(t.full_tensor() if hasattr(t, "full_tensor") else t)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier of optimizer step `step` (0-based): linear warm-up over
    `warmup_steps` steps ((step + 1) / warmup_steps), then 1; always 1 when `warmup_steps` is 0."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


class Learner:
    """The single-process `LearnerAPI`: the policy, reference and critic in this process.

    An optimizer step whose loss or gradient norm is not finite is skipped (no parameter,
    optimizer, scheduler or β change) and counted in `UpdateStats.skipped_steps`.
    `state_dict` / `load_state_dict` carry everything besides the weights that a resumed run
    needs: optimizer and LR-scheduler states, β, the mini-batch shuffling generator.

    Args:
        model: the policy (a transformers causal LM, fp32 weights).
        algo: estimator, loss, clip range, aggregation, KL, epochs / mini-batches.
        trainer: lr, weight decay, grad clip, micro-batch size, autocast, seed.
        pad_id: padding token id.
        temperature: the rollout temperature (log-probs are taken at it).
        max_tokens: the generation budget L_max (``seq_mean_token_sum_norm``'s constant).
        ref_model: frozen reference policy; required iff ``algo.kl.beta > 0``.
        critic: a `ValueModel`; required iff the estimator needs a critic.
        collective: what the ranks of a data-parallel learner agree on (`reasoner.distributed`):
            this learner then holds one rank's share of each batch (whole groups) and its
            modules are FSDP2-sharded; the loss normalizers, the statistics and the decisions to
            step or skip are global, and every rank runs as many micro-batches as the busiest
            one (a rank with fewer runs passes that add nothing). None: one process.
        shard: called on each module the learner runs (the policy's and the reference's
            `reasoner.logprobs.Scorer`, the critic) before the optimizers are built
            (`reasoner.distributed.worker.shard`: FSDP2).
        keep_unsharded: with `shard`, FSDP2 keeps the parameters and gradients unsharded across
            a mini-batch's micro-batches (``set_reshard_after_forward`` / ``_after_backward``,
            ``set_requires_gradient_sync``): one all-gather and one gradient reduce-scatter per
            mini-batch instead of two all-gathers and a reduce-scatter per micro-batch, for the
            memory of the full parameters and gradients on every rank (as DDP).
    Raises:
        ValueError: kl.beta > 0 without a reference model; an estimator that needs a critic
            without one, or a critic with an estimator that does not use it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        algo: AlgorithmConfig,
        trainer: TrainerConfig,
        pad_id: int,
        temperature: float,
        max_tokens: int,
        ref_model: torch.nn.Module | None = None,
        critic: torch.nn.Module | None = None,
        collective: Collective | None = None,
        shard: Callable[[torch.nn.Module], Any] | None = None,
        keep_unsharded: bool = False,
    ) -> None:
        if algo.kl.beta > 0 and ref_model is None:
            raise ValueError("algorithm.kl.beta > 0 needs a reference model")
        if algo.needs_critic != (critic is not None):
            raise ValueError(f"algorithm.estimator={algo.estimator}: a critic is needed iff the estimator uses one")
        self.model, self.algo, self.trainer = model, algo, trainer
        self.pad_id, self.temperature, self.max_tokens = pad_id, temperature, max_tokens
        self.ref_model, self.critic = ref_model, critic
        self._policy, self._ref = Scorer(model), None if ref_model is None else Scorer(ref_model)
        if shard is not None:
            for m in (self._policy, self._ref, critic):
                if m is not None:
                    shard(m)
        self.comm = collective or Local()
        #: the FSDP2 roots whose unsharding `_hold` steers (empty: every pass reshards, FSDP2's default)
        self._held = (
            [m for m in (self._policy, critic) if m is not None] if shard is not None and keep_unsharded else []
        )
        # FSDP2 collectives pair up only if every rank runs the decoder as often: across ranks,
        # prompt sharing runs its two passes in every micro-batch, whatever the rows
        self._lockstep = self.comm.world > 1
        self.kl_coef = algo.kl.beta
        loss_entry = registry.get("policy_loss", algo.policy_loss)
        self._policy_loss = loss_entry.fn
        # a zero-advantage sequence adds nothing to the gradient when the policy loss is the only term
        self._skip_zero_advantage = (
            trainer.skip_zero_advantage
            and loss_entry.zero_at_zero_advantage
            and algo.kl.beta == 0
            and not algo.entropy_coef
            and critic is None
        )
        if trainer.gradient_checkpointing:
            for m in (model, *([critic.backbone] if critic is not None else [])):
                m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._aggregate = registry.get("loss_agg", algo.loss_agg).fn
        self._kl = registry.get("kl", algo.kl.estimator).fn
        # fused: one kernel per parameter, no full-model temporaries (BENCHMARKS.md "Profile of the GRPO step")
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay, fused=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_factor(s, trainer.lr_warmup_steps)
        )
        self.critic_optimizer = (
            torch.optim.AdamW(critic.parameters(), lr=algo.critic.lr, weight_decay=trainer.weight_decay, fused=True)
            if critic is not None
            else None
        )
        self._shuffle = torch.Generator().manual_seed(trainer.seed)

    # ------------------------------------------------------------------ state

    def state_dict(self, keep: bool = True) -> dict:
        """Optimizer(s) (full, on the CPU: gathered from the shards when sharded, a collective;
        `keep` False on the ranks that do not write it, which then hold none of it), LR scheduler,
        β and shuffling-generator states (for `torch.save`)."""
        critic_opt = self.critic_optimizer
        return {
            "optimizer": full_optimizer_state(self.optimizer, keep),
            "scheduler": self.scheduler.state_dict(),
            "critic_optimizer": None if critic_opt is None else full_optimizer_state(critic_opt, keep),
            "kl_coef": self.kl_coef,
            # each rank shuffles its own rows (a sharded learner): every rank's generator, in rank order
            "shuffle_ranks": self.comm.gather(self._shuffle.get_state()),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (the weights are restored by `load`).

        Raises:
            ValueError: the state has a critic optimizer and this learner no critic, or the reverse.
        """
        if (state["critic_optimizer"] is None) != (self.critic_optimizer is None):
            raise ValueError("checkpoint and run disagree on having a critic (algorithm.estimator)")
        load_full_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.critic_optimizer is not None:
            load_full_optimizer_state(self.critic_optimizer, state["critic_optimizer"])
        self.kl_coef = float(state["kl_coef"])
        ranks = state["shuffle_ranks"] if "shuffle_ranks" in state else [state["shuffle"]]  # or an older checkpoint's
        # the same number of ranks continues each rank's stream; another number restarts them from rank 0's
        self._shuffle.set_state(ranks[self.comm.rank] if len(ranks) == self.comm.world else ranks[0])

    def _modules(self) -> dict[str, torch.nn.Module | None]:
        return dict(zip(_MODULES, (self.model, self.ref_model, self.critic)))

    def save(self, path: Path) -> None:
        """Write the full fp32 weights (``policy``, ``reference``, ``critic`` ``.safetensors``,
        those that exist) and `state_dict` (``trainer.pt``) into the directory `path`. Sharded:
        every rank calls it (the state is gathered), rank 0 writes, and all return once it has;
        the files are those of one process, so a run resumes with any number of ranks."""
        keep = self.comm.rank == 0
        weights = {file: FullState(m, keep) for file, m in self._modules().items() if m is not None}
        state = self.state_dict(keep)
        if keep:
            for file, full in weights.items():
                save_model(full, str(Path(path) / file))
            torch.save(state, Path(path) / _STATE)
        self.comm.barrier()

    def load(self, path: Path) -> None:
        """Restore what `save` wrote (every rank reads the directory and keeps its shards).

        Raises:
            ValueError: the directory has reference or critic weights this learner has not, or the
                reverse, or weights of another model (the message names the file and tensor).
        """
        for file, module in self._modules().items():
            if (module is None) != (not (Path(path) / file).exists()):
                raise ValueError(f"checkpoint {path} and this run disagree on {file.split('.')[0]} weights")
            if module is not None:
                load_full_state(module, load_file(Path(path) / file), str(Path(path) / file))
        self.load_state_dict(torch.load(Path(path) / _STATE, weights_only=True, map_location="cpu"))

    def export_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The policy's weights by HF name (`reasoner.rollout.sync.named_weights`)."""
        return named_weights(self.model)

    def export_pretrained(self, path: Path, tokenizer: Any) -> None:
        """The policy as an HF model directory (`reasoner.models.export_pretrained`)."""
        export_pretrained(self.model, tokenizer, path)

    def sequence_logprobs(self, token_ids: list[int], prompt_len: int, bf16: bool) -> list[float]:
        """The policy's log-probs of the tokens after `prompt_len` (nats; `reasoner.logprobs.sequence_logprobs`)."""
        return sequence_logprobs(self._policy, token_ids, prompt_len, bf16)

    # ------------------------------------------------------------------ the step's calls

    def score(self, batch: TrainBatch) -> TrainBatch:
        """Old / reference log-probs and critic values, as the algorithm needs them (no gradient);
        returns the batch with them filled (`Rows` over the policy tokens, or None)."""
        a = self.algo
        need_old = a.ppo_epochs > 1 or a.mini_batches > 1 or self._kl_reward
        n = len(batch)
        old: Rows = [None] * n if need_old else []
        ref: Rows = [None] * n if self.ref_model is not None else []
        values: Rows = [None] * n if self.critic is not None else []
        chunk = self.trainer.logits_chunk_tokens
        if need_old or ref or values:
            self.model.eval()
            parts = self._micro_batches(batch, list(range(n)))
            with torch.no_grad():
                for k in range(self.comm.max(len(parts))):
                    own = k < len(parts)  # past its own micro-batches, a rank runs one for the collectives
                    idx = parts[k] if own else [0]
                    padded = self._pad(batch, idx)
                    mask = padded.target_mask
                    with autocast(self.trainer.bf16_autocast):
                        for rows_out, scorer in ((old, self._policy), (ref, self._ref)):
                            if rows_out:
                                logp = scorer(
                                    padded,
                                    temperature=self.temperature,
                                    chunk_tokens=chunk,
                                    lockstep=self._lockstep,
                                    packing=self.trainer.packing,
                                )[0]
                                if own:
                                    _put(rows_out, idx, logp, mask)
                        if self.critic is not None:
                            v = self.critic(padded)
                            if own:
                                _put(values, idx, v, mask)
        return replace(batch, old_logp=old or None, ref_logp=ref or None, values=values or None)

    @property
    def _kl_reward(self) -> bool:
        return self.algo.kl.beta > 0 and self.algo.kl.placement is KLPlacement.reward

    def update(self, batch: TrainBatch) -> UpdateStats:
        """Train on one rollout batch (``ppo_epochs`` x ``mini_batches`` optimizer steps).

        Raises:
            ValueError: the batch has no advantages (the step's advantage phase fills them).
        """
        if batch.advantages is None:
            raise ValueError("the batch has no advantages: run score, then the advantage estimator, then update")
        a = self.algo
        self.model.train()
        rows = [i for i in range(len(batch)) if not (a.mask_truncated and batch.truncated[i])]
        totals = dict.fromkeys(("loss", "value_loss", "grad_norm", "kl", "entropy", "clip", "mismatch"), 0.0)
        totals.update(tokens=0, mismatch_n=0, tis_capped=0.0, zero_adv=0, is_ratio=0.0, is_weight=0.0)
        steps = skipped = empty = 0
        ratio_max = 0.0
        for epoch in range(a.ppo_epochs):
            order = torch.tensor(rows)
            if a.mini_batches > 1:
                order = order[torch.randperm(len(rows), generator=self._shuffle)]
            for part in torch.tensor_split(order, a.mini_batches):
                local = self.accumulate(batch, part.tolist())
                part_max = local.pop("is_ratio_max")
                sums = dict(zip(local, self.comm.sum(list(local.values()))))  # over the ranks
                if epoch == 0:
                    ratio_max = _max_nan(ratio_max, self.comm.max(part_max))
                if not sums.pop("rows"):
                    continue
                loss, value_loss = sums.pop("loss"), sums.pop("value_loss")
                if not sums["tokens"]:  # every sequence had a zero advantage: the gradient is 0
                    empty += 1
                    self._zero_gradients()
                if (grad_norm := self._optimizer_step(math.isfinite(loss + value_loss))) is None:
                    skipped += 1
                else:
                    totals["grad_norm"] += grad_norm
                    totals["loss"] += loss
                    totals["value_loss"] += value_loss
                    steps += 1
                if epoch == 0:
                    for key, value in sums.items():
                        totals[key] += value
        nan = float("nan")
        tokens = totals["tokens"] or nan  # no sequence run: no per-token figure
        kl = totals["kl"] / tokens
        if a.kl.target and not skipped and totals["tokens"]:
            self.kl_coef = adaptive_kl_coef(self.kl_coef, kl, a.kl.target, a.kl.horizon, len(batch))
        per_step = {k: totals[k] / steps if steps else nan for k in ("loss", "grad_norm", "value_loss")}
        return UpdateStats(
            loss=per_step["loss"],
            kl=kl,
            kl_coef=self.kl_coef,
            entropy=totals["entropy"] / tokens,
            clip_frac=totals["clip"] / tokens,
            grad_norm=per_step["grad_norm"],
            logprob_mismatch=totals["mismatch"] / max(totals["mismatch_n"], 1),
            tis_clip_frac=totals["tis_capped"] / tokens,
            value_loss=per_step["value_loss"],
            is_ratio_mean=totals["is_ratio"] / totals["mismatch_n"] if totals["mismatch_n"] else nan,
            is_ratio_max=ratio_max if totals["mismatch_n"] else nan,
            is_weight_mean=(totals["is_weight"] / totals["mismatch_n"] if a.tis_cap else 1.0)
            if totals["mismatch_n"]
            else nan,
            optimizer_steps=steps,
            skipped_steps=skipped,
            empty_steps=empty,
            zero_adv_sequences=int(totals["zero_adv"]),
        )

    def accumulate(self, batch: TrainBatch, rows: list[int]) -> dict[str, float]:
        """Forward + backward of one mini-batch (`rows`), micro-batched; no optimizer step.

        Loss normalizers count the mini-batch's policy tokens and sequences (over every rank), so
        the accumulated gradient is the mini-batch's gradient for any micro-batch size and any
        number of ranks. Sequences whose advantage is 0 at every token are not run when that
        cannot change the gradient (``trainer.skip_zero_advantage``); the normalizers still count
        them. Returns this rank's sums for the stats; ``tokens`` counts the policy tokens run,
        ``zero_adv`` the sequences left out, ``rows`` the sequences of the mini-batch.
        """
        a = self.algo
        total_tokens, total_rows = self.comm.sum([sum(batch.policy_lengths[i] for i in rows), len(rows)])
        run = [i for i in rows if batch.advantages[i].any()] if self._skip_zero_advantage else rows
        sums = dict.fromkeys(("loss", "value_loss", "kl", "entropy", "clip", "mismatch", "tis_capped"), 0.0)
        sums.update(tokens=sum(batch.policy_lengths[i] for i in run), mismatch_n=0, zero_adv=len(rows) - len(run))
        sums.update(is_ratio=0.0, is_ratio_max=0.0, is_weight=0.0)
        sums["rows"] = len(rows)
        parts = self._micro_batches(batch, run)
        passes = self.comm.max(len(parts))
        for k in range(passes):
            self._hold(forward=True, backward=k < passes - 1)
            if k >= len(parts):  # this rank has run its own: a pass that adds nothing, for the collectives
                self._idle_pass(batch)
                continue
            idx = parts[k]
            padded = self._pad(batch, idx)
            mask = padded.target_mask
            maskf = mask.float()
            with autocast(self.trainer.bf16_autocast):
                logp, entropy = self._policy(
                    padded,
                    temperature=self.temperature,
                    with_entropy=True,
                    entropy_grad=a.entropy_coef > 0,
                    chunk_tokens=self.trainer.logits_chunk_tokens,
                    lockstep=self._lockstep,
                    packing=self.trainer.packing,
                )
            old = logp.detach() if batch.old_logp is None else _place(batch.old_logp, idx, mask)
            adv = _place(batch.advantages, idx, mask)
            per_token, clipped = self._policy_loss(logp, old, adv, maskf, a)
            sampler, has_sampler = self._sampler_logp(batch, idx, mask, old)
            if a.tis_cap:
                weights, capped = truncated_is_weights(old, sampler, a.tis_cap)
                per_token = per_token * weights
                sums["tis_capped"] += float((capped.float() * maskf).sum())
                sums["is_weight"] += float((weights * has_sampler).sum())
            if self.ref_model is not None:
                ref = _place(batch.ref_logp, idx, mask)
                if a.kl.placement is KLPlacement.loss:
                    kl = self._kl(logp, ref)
                    per_token = per_token + self.kl_coef * kl
                else:
                    kl = self._kl(old, ref)
                sums["kl"] += float((kl.detach() * maskf).sum())
            if a.entropy_coef:
                per_token = per_token - a.entropy_coef * entropy
            loss = self._aggregate(per_token, maskf, int(total_tokens), int(total_rows), self.max_tokens)
            loss.backward()
            if self.critic is not None:
                with autocast(self.trainer.bf16_autocast):
                    values = self.critic(padded)
                old_values, returns = _place(batch.values, idx, mask), _place(batch.returns, idx, mask)
                value_loss = clipped_value_loss(values, old_values, returns, a.critic.value_clip)
                value_loss = aggregate.token_mean(value_loss, maskf, int(total_tokens))
                value_loss.backward()
                sums["value_loss"] += float(value_loss.detach())
            sums["loss"] += float(loss.detach())
            sums["entropy"] += float((entropy.detach() * maskf).sum())
            sums["clip"] += float((clipped.float() * maskf).sum())
            sums["mismatch"] += float(((old - sampler).abs() * has_sampler).sum())
            sums["mismatch_n"] += int(has_sampler.sum())
            ratio = truncated_is_weights(old, sampler, math.inf)[0] * has_sampler
            sums["is_ratio"] += float(ratio.sum())
            sums["is_ratio_max"] = _max_nan(sums["is_ratio_max"], float(ratio.max()))
        self._hold(forward=False, backward=False)  # FSDP2's defaults again, for the scoring passes
        return sums

    # ------------------------------------------------------------------ helpers

    def _hold(self, forward: bool, backward: bool) -> None:
        """(``keep_unsharded``) Whether the coming forward passes leave the parameters unsharded
        (for their backward and the next micro-batch), and whether the coming backward passes
        keep them so and keep the gradients unreduced (a micro-batch before the mini-batch's
        last) or reshard them and reduce-scatter the summed gradients (the last: the optimizer
        step sees sharded parameters and gradients)."""
        for m in self._held:
            m.set_reshard_after_forward(not forward)
            m.set_reshard_after_backward(not backward)
            m.set_requires_gradient_sync(not backward)

    def _idle_pass(self, batch: TrainBatch) -> None:
        """Forward and backward of the batch's first sequence with a zero loss: the FSDP2
        collectives of one micro-batch (all-gathers, gradient reduce-scatters), no gradient."""
        padded = self._pad(batch, [0])
        with autocast(self.trainer.bf16_autocast):
            logp, _ = self._policy(
                padded,
                temperature=self.temperature,
                chunk_tokens=self.trainer.logits_chunk_tokens,
                lockstep=self._lockstep,
                packing=self.trainer.packing,
            )
            loss = logp.sum() * 0.0
            if self.critic is not None:
                loss = loss + self.critic(padded).sum() * 0.0
        loss.backward()

    def _micro_batches(self, batch: TrainBatch, rows: list[int]) -> list[list[int]]:
        """`rows` in micro-batches of ``trainer.micro_batch_size`` sequences, or, with
        ``trainer.micro_batch_tokens`` = K > 0, of as many sequences as keep n x (longest
        sequence) <= K tokens (a longer sequence alone). The rows of a group (one prompt) are
        consecutive, so a micro-batch computes the prompt once (`reasoner.logprobs`); groups are
        ordered by their longest sequence and rows by length, so that a micro-batch pads to
        little more than its own rows need. The normalizers count the whole batch, so the split
        changes no result beyond float summation order."""
        mb, budget, g = self.trainer.micro_batch_size, self.trainer.micro_batch_tokens, batch.group_size
        length = lambda i: len(batch.sequences[i])  # noqa: E731
        groups: dict[int, list[int]] = {}
        for i in rows:
            groups.setdefault(i // g, []).append(i)
        ordered = sorted(groups.values(), key=lambda members: -max(map(length, members)))
        order = [i for members in ordered for i in sorted(members, key=length, reverse=True)]
        if not budget:
            return [order[s : s + mb] for s in range(0, len(order), mb)]
        parts: list[list[int]] = []
        for i in order:  # lengths never rise within a group, but may between groups
            part = parts[-1] if parts else []
            if part and (len(part) + 1) * max(map(length, [*part, i])) <= budget:
                part.append(i)
            else:
                parts.append([i])
        return parts

    def _pad(self, batch: TrainBatch, idx: list[int]) -> PaddedBatch:
        return pad_batch(
            [batch.sequences[i] for i in idx],
            [batch.prompt_lens[i] for i in idx],
            self.pad_id,
            [batch.loss_masks[i] for i in idx],
        )

    @staticmethod
    def _sampler_logp(
        batch: TrainBatch, idx: list[int], mask: torch.Tensor, old: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's log-probs in micro-batch layout, and where they exist; where a sequence
        has none (or a count that does not match its policy tokens), the learner's old
        log-probs stand in."""
        rows, has = [], []
        for i in idx:
            lp, n = batch.sampler_logprobs[i], batch.policy_lengths[i]
            ok = len(lp) == n
            rows.append(torch.tensor(lp, dtype=torch.float32) if ok else torch.full((n,), float("nan")))
            has.append(torch.full((n,), float(ok)))
        sampler = _place(rows, list(range(len(idx))), mask)
        has_sampler = _place(has, list(range(len(idx))), mask)
        return torch.where(has_sampler > 0, sampler, old), has_sampler

    def _zero_gradients(self) -> None:
        """Set every trained parameter's gradient to zeros, as a forward and backward pass of
        sequences whose advantages are all 0 would leave it: the optimizer step that follows
        moves AdamW's moments, weight decay and the LR schedule exactly as that pass would.
        (Only the policy's: sequences are skipped only without a critic.)"""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)

    def _optimizer_step(self, loss_finite: bool) -> float | None:
        """Clip, step (policy and critic, then the LR schedule) and zero the gradients; return
        the policy's gradient norm, or None when the step was skipped because the loss
        (`loss_finite` False) or a gradient norm is not finite."""
        grad_norm = _scalar(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.trainer.grad_clip))
        finite = loss_finite and math.isfinite(grad_norm)
        optimizers = [self.optimizer]
        if self.critic is not None:
            critic_norm = _scalar(torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.trainer.grad_clip))
            finite = finite and math.isfinite(critic_norm)
            optimizers.append(self.critic_optimizer)
        for opt in optimizers:
            if finite:
                opt.step()
            opt.zero_grad(set_to_none=True)
        if not finite:
            return None
        self.scheduler.step()
        return grad_norm
