"""Typed (structured) configuration for `reasoner-train`, one dataclass per Hydra group.

Every default lives here, once; YAML files under ``conf/`` only choose group options and set
the fields a recipe changes. Hydra merges YAML and command-line overrides into these dataclasses,
so an unknown key or a wrong type fails at start naming the field (``trainer.lr_typo``), and
`RunConfig.__post_init__` (run by ``OmegaConf.to_object``) checks ranges and combinations.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore

from reasoner.algorithms import registry
from reasoner.algorithms.registry import Entry
from reasoner.prompts import Template

#: the Hydra config directory (``conf/``: reasoner-train's config.yaml, reasoner-eval's eval.yaml).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


class Backend(str, Enum):
    vllm = "vllm"
    hf = "hf"


class RolloutDtype(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"


class HeapTrim(str, Enum):
    step = "step"  # hand the free heap back after every RL step
    slack = "slack"  # only once resident memory has crept past a slack (`reasoner.jobs.common.HeapTrimmer`)


class KLPlacement(str, Enum):
    loss = "loss"  # L += β · agg(kl)  (GRPO style)
    reward = "reward"  # r_t -= β · kl_t before returns/advantages (PPO / REINFORCE++ style)


class BadRow(str, Enum):
    error = "error"
    skip = "skip"


class BestMode(str, Enum):
    max = "max"
    min = "min"


class DPOLoss(str, Enum):
    sigmoid = "sigmoid"  # DPO (Rafailov et al. 2023, Eq. 7), conservative with label_smoothing > 0
    ipo = "ipo"  # IPO (Azar et al. 2023, Eq. 17)


class StageKind(str, Enum):
    sft = "sft"  # supervised fine-tuning (`reasoner.sft_job`)
    rl = "rl"  # an RL run (`reasoner.train.run`)
    rejection_sampling = "rejection_sampling"  # sample, verify, keep the correct (`reasoner.rejection`)


@dataclass
class ModelConfig:
    #: ``embedded:smollm2-135m``, a local HF-format directory, or a Hugging Face hub id.
    path: str = "embedded:smollm2-135m"

    def __post_init__(self) -> None:
        check(
            "model.path",
            self.path,
            bool(self.path.strip()),
            "embedded:smollm2-135m, a local HF model directory or a hub id",
        )


@dataclass
class DataConfig:
    #: RL prompts: ``arithmetic`` (procedural, see reasoner/arithmetic.py), ``vendored:NAME``
    #: (gsm8k_train, gsm8k_test, math500, aime24, aime25, amc23, humaneval, mbpp), a .jsonl /
    #: .parquet path, or an HF dataset id.
    train: str = "arithmetic"
    #: held-out evaluation set, same forms as `train`; never trained on.
    heldout: str = "arithmetic"
    #: HF dataset split names (ignored for files).
    train_split: str = "train"
    heldout_split: str = "test"
    #: held-out problems evaluated (the first N after a seeded shuffle).
    heldout_n: int = 500
    #: added to the RL prompts' shuffle / generation seed (trainer.seed + 2): a second RL stage
    #: of a recipe draws other prompts while the held-out set (trainer.seed + 1) stays the same.
    train_seed: int = 0
    #: difficulty levels of the procedural arithmetic generator used for `arithmetic` sources.
    arithmetic_levels: list[int] = field(default_factory=lambda: [2])
    template: Template = Template.plain
    on_bad_row: BadRow = BadRow.error
    #: SFT and rejection-sampled data lose every problem that overlaps these benchmarks (names
    #: in eval/benchmarks.py) or the held-out set: same normalized text, or a shared word
    #: n-gram of `decontaminate_ngram` words (`reasoner.decontaminate`).
    decontaminate: list[str] = field(default_factory=lambda: ["aime24", "aime25", "amc23", "math500", "gsm8k"])
    decontaminate_ngram: int = 8

    def __post_init__(self) -> None:
        check("data.heldout_n", self.heldout_n, self.heldout_n >= 1, ">= 1")
        check(
            "data.train",
            self.train,
            bool(self.train.strip()),
            "a source: arithmetic, vendored:NAME, a file path or an HF dataset id",
        )
        check(
            "data.heldout",
            self.heldout,
            bool(self.heldout.strip()),
            "a source: arithmetic, vendored:NAME, a file path or an HF dataset id",
        )
        check("data.decontaminate_ngram", self.decontaminate_ngram, self.decontaminate_ngram >= 1, ">= 1")


@dataclass
class SFTConfig:
    """Cold start: supervised fine-tuning on worked solutions before RL."""

    enabled: bool = True
    #: worked-solution source: ``arithmetic`` or any source with a ``solution`` field.
    source: str = "arithmetic"
    examples: int = 512
    #: ``arithmetic`` source only: share of worked solutions written tersely (answer, no steps).
    terse_fraction: float = 0.5
    #: ``arithmetic`` source with tools on (``env``): share of examples that demonstrate a call of
    #: the python tool (`reasoner.data.arithmetic.tool_turns`); the rest work step by step.
    tool_fraction: float = 0.5
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 16
    #: examples per forward + backward pass; the loss is the token mean over the whole batch, so
    #: this moves only memory (activations) and float order. 4, not 8: the cold start is the
    #: embedded default's memory peak (BENCHMARKS.md "Memory of the main job").
    micro_batch_size: int = 4
    #: longest training sequence, in tokens (longer examples are dropped and counted).
    max_tokens: int = 256
    #: recompute activations in the backward pass (less memory, ~30% more compute).
    gradient_checkpointing: bool = False
    #: batches of similar-length examples (less padding; off by default, as in transformers).
    group_by_length: bool = False

    def __post_init__(self) -> None:
        check("sft.terse_fraction", self.terse_fraction, 0 <= self.terse_fraction <= 1, "in [0, 1]")
        check("sft.tool_fraction", self.tool_fraction, 0 <= self.tool_fraction <= 1, "in [0, 1]")
        check("sft.examples", self.examples, self.examples >= 1, ">= 1")
        check("sft.epochs", self.epochs, self.epochs >= 1, ">= 1")
        check("sft.lr", self.lr, self.lr > 0, "> 0")
        check("sft.batch_size", self.batch_size, self.batch_size >= 1, ">= 1")
        check("sft.micro_batch_size", self.micro_batch_size, self.micro_batch_size >= 1, ">= 1")
        check("sft.max_tokens", self.max_tokens, self.max_tokens >= 1, ">= 1")


@dataclass
class RejectionConfig:
    """Rejection sampling (DeepSeek-R1 §2.3.3): sample completions from the current model, keep
    those the verifier accepts, write them as an SFT dataset (`reasoner.rejection`)."""

    #: problems to sample from (any source with answers); held-out problems are excluded.
    source: str = "arithmetic"
    problems: int = 256
    #: completions sampled per problem.
    samples: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    #: correct completions kept per problem (at most).
    keep_per_problem: int = 1
    #: keep the shortest correct completions (else the first drawn).
    shortest: bool = True
    #: also require the format verifier's approval (a well-formed think block for ``r1``).
    require_format: bool = True
    #: drop completions that hit ``max_tokens`` even when judged correct (they never ended).
    drop_truncated: bool = True

    def __post_init__(self) -> None:
        check("rejection.problems", self.problems, self.problems >= 1, ">= 1")
        check("rejection.samples", self.samples, self.samples >= 1, ">= 1")
        check("rejection.temperature", self.temperature, self.temperature > 0, "> 0 (sampling several completions)")
        check("rejection.top_p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]")
        check(
            "rejection.max_tokens",
            self.max_tokens,
            self.max_tokens >= 1,
            ">= 1 (cut to what fits in rollout.max_model_len after the longest prompt)",
        )
        check(
            "rejection.keep_per_problem",
            self.keep_per_problem,
            1 <= self.keep_per_problem <= self.samples,
            "in [1, rejection.samples]",
        )


@dataclass
class PairsConfig:
    """Preference pairs from a model's own samples (``reasoner-pairs``, `reasoner.jobs.pairs`): each
    RL prompt of the run (``data.train``, as ``reasoner-train`` draws them) is sampled ``samples``
    times at ``rollout.temperature`` / ``rollout.max_tokens``, the verifier grades every sample, and
    correct completions are paired with wrong ones of the same prompt."""

    #: completions per prompt; 0 = ``algorithm.sampling.group_size`` (GRPO's budget per prompt).
    samples: int = 0
    #: pairs kept per prompt (at most), drawn from its (correct, wrong) combinations.
    pairs_per_prompt: int = 4

    def __post_init__(self) -> None:
        check("pairs.samples", self.samples, self.samples >= 0, ">= 0 (0 = algorithm.sampling.group_size)")
        check("pairs.pairs_per_prompt", self.pairs_per_prompt, self.pairs_per_prompt >= 1, ">= 1")


@dataclass
class PreferenceTrainConfig:
    """What reward-model training and DPO share: the pairs and the optimizer loop
    (`reasoner.fit.fit`: AdamW, 5% warm-up then linear decay, gradient clipping at 1)."""

    #: the config group's name, for error messages
    group: ClassVar[str] = "rm"

    #: the preference pairs (`reasoner.data.preferences`: a JSONL / JSON / Parquet file or an HF dataset id).
    source: str = ""
    #: share of the prompts whose pairs are held out (pairwise accuracy; 0 = none).
    heldout_fraction: float = 0.2
    epochs: int = 1
    lr: float = 1e-5
    #: pairs per optimizer step
    batch_size: int = 16
    #: pairs per forward pass (two sequences each)
    micro_batch_size: int = 4
    #: longest sequence, in tokens (pairs with a longer one are dropped and counted).
    max_tokens: int = 384

    def __post_init__(self) -> None:
        ok = 0 <= self.heldout_fraction < 1
        check(f"{self.group}.heldout_fraction", self.heldout_fraction, ok, "in [0, 1)")
        check(f"{self.group}.epochs", self.epochs, self.epochs >= 1, ">= 1")
        check(f"{self.group}.lr", self.lr, self.lr > 0, "> 0")
        check(f"{self.group}.batch_size", self.batch_size, self.batch_size >= 1, ">= 1")
        check(f"{self.group}.micro_batch_size", self.micro_batch_size, self.micro_batch_size >= 1, ">= 1")
        check(f"{self.group}.max_tokens", self.max_tokens, self.max_tokens >= 2, ">= 2")


@dataclass
class RewardModelConfig(PreferenceTrainConfig):
    """Bradley-Terry reward-model training (``reasoner-rm``, `reasoner.reward_model`): a scalar head
    on ``model.path``'s backbone scored at the last token, loss -log σ(r_chosen - r_rejected - margin)."""

    lr: float = 3e-5


@dataclass
class DPOConfig(PreferenceTrainConfig):
    """DPO (``reasoner-dpo``, `reasoner.dpo`) from ``model.path``, which is also the frozen reference."""

    #: β, the strength of the KL to the reference (DPO Eq. 7; τ of IPO).
    beta: float = 0.1
    loss: DPOLoss = DPOLoss.sigmoid
    #: ε of conservative DPO (labels assumed flipped with probability ε); sigmoid only.
    label_smoothing: float = 0.0
    #: 1e-5: smaller steps (the 5e-7 to 1e-6 of 7B recipes) barely move a 135M model's weights
    #: off the bf16 grid the sampler and the exported checkpoint round them to
    lr: float = 1e-5

    group: ClassVar[str] = "dpo"

    def __post_init__(self) -> None:
        super().__post_init__()
        check("dpo.beta", self.beta, self.beta > 0, "> 0")
        ok = 0 <= self.label_smoothing < 0.5 and (self.loss is DPOLoss.sigmoid or self.label_smoothing == 0)
        check("dpo.label_smoothing", self.label_smoothing, ok, "in [0, 0.5), and 0 with dpo.loss=ipo")


@dataclass
class StageConfig:
    """One stage of a recipe: a kind and the overrides (dotted ``field=value``) it applies on
    top of the run's config."""

    name: str = ""
    kind: StageKind = StageKind.rl
    overrides: list[str] = field(default_factory=list)


@dataclass
class RecipeConfig:
    """A multi-stage pipeline (``recipe=r1``): stages run in order, each starting from the
    previous one's model; empty = a plain run (`reasoner.recipe`)."""

    name: str = ""
    stages: list[StageConfig] = field(default_factory=list)


def check(name: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise ``ValueError("config field NAME=VALUE is not allowed: must be ALLOWED")`` unless `ok`."""
    if not ok:
        raise ValueError(f"config field {name}={value!r} is not allowed: must be {allowed}")


def check_registered(name: str, kind: str, value: str) -> Entry:
    """The registry entry `value` of `kind` (`reasoner.algorithms.registry.get`).

    Raises:
        ValueError: unknown name; the message names the field and lists the valid names.
    """
    try:
        return registry.get(kind, value)
    except registry.UnknownAlgorithm as err:
        raise ValueError(f"config field {name}={value!r} is not allowed: {err}") from None


@dataclass
class ClipConfig:
    """The clipped surrogate's range [1 - low, 1 + high] (PPO eps = 0.2; DAPO clip-higher 0.28)."""

    low: float = 0.2
    high: float = 0.2
    #: dual-clip constant c > 1 for A < 0 (veRL uses 3.0); 0 = off.
    dual: float = 0.0

    def __post_init__(self) -> None:
        check("algorithm.clip.low", self.low, 0 < self.low < 1, "in (0, 1)")
        check("algorithm.clip.high", self.high, self.high > 0, "> 0")
        check("algorithm.clip.dual", self.dual, self.dual == 0 or self.dual > 1, "0 (off) or > 1")


@dataclass
class KLConfig:
    """KL to the reference policy."""

    #: coefficient β; 0 loads no reference model.
    beta: float = 0.0
    #: a registered KL estimator (k1, k2, k3: Schulman 2020).
    estimator: str = "k3"
    placement: KLPlacement = KLPlacement.loss
    #: adaptive β (Ziegler et al. 2019): target mean per-token KL (nats); 0 = fixed β.
    target: float = 0.0
    horizon: int = 10000

    def __post_init__(self) -> None:
        check("algorithm.kl.beta", self.beta, self.beta >= 0, ">= 0")
        check_registered("algorithm.kl.estimator", "kl", self.estimator)
        ok = self.target == 0 or (self.target > 0 and self.beta > 0)
        check("algorithm.kl.target", self.target, ok, "0 (fixed β) or > 0 with algorithm.kl.beta > 0")
        check("algorithm.kl.horizon", self.horizon, self.horizon >= 1, ">= 1")


@dataclass
class CriticConfig:
    """The learned critic of estimators that need one (``gae``): GAE's discount γ and λ
    (Open-Reasoner-Zero: 1, 1), the value-loss clip range, the critic's learning rate."""

    gamma: float = 1.0
    gae_lambda: float = 1.0
    value_clip: float = 0.2
    lr: float = 5e-5

    def __post_init__(self) -> None:
        check("algorithm.critic.gamma", self.gamma, 0 <= self.gamma <= 1, "in [0, 1]")
        check("algorithm.critic.gae_lambda", self.gae_lambda, 0 <= self.gae_lambda <= 1, "in [0, 1]")
        check("algorithm.critic.value_clip", self.value_clip, self.value_clip > 0, "> 0")
        check("algorithm.critic.lr", self.lr, self.lr > 0, "> 0")


@dataclass
class SamplingConfig:
    """Groups and DAPO dynamic sampling."""

    #: G, completions sampled per prompt.
    group_size: int = 8
    #: keep only groups whose correctness is mixed (0 < correct < G; without a correctness term,
    #: groups whose rewards vary); sample more prompts until the batch has
    #: trainer.prompts_per_step groups or `max_rounds` generation rounds have run (DAPO §3.3).
    dynamic: bool = False
    max_rounds: int = 3

    def __post_init__(self) -> None:
        check("algorithm.sampling.group_size", self.group_size, self.group_size >= 2, ">= 2 (GRPO needs a group)")
        check("algorithm.sampling.max_rounds", self.max_rounds, self.max_rounds >= 1, ">= 1")


@dataclass
class ShapingConfig:
    """Length terms added to the reward (computed in `reasoner.rewards.add_length_terms`); kept
    with the algorithm because the recipes that use them (DAPO, Kimi k1.5) define them."""

    #: DAPO soft overlong punishment: L_cache tokens before rollout.max_tokens (= L_max); 0 = off.
    overlong_buffer: int = 0
    #: Kimi k1.5 length reward weight (0 = off), switched on after this many RL steps.
    length_weight: float = 0.0
    length_warmup: int = 0

    def __post_init__(self) -> None:
        check("algorithm.shaping.overlong_buffer", self.overlong_buffer, self.overlong_buffer >= 0, ">= 0")
        check("algorithm.shaping.length_weight", self.length_weight, self.length_weight >= 0, ">= 0")
        check("algorithm.shaping.length_warmup", self.length_warmup, self.length_warmup >= 0, ">= 0")


@dataclass
class AlgorithmConfig:
    """The RL algorithm, as named knobs grouped by concern. The recipes in ``conf/algorithm/``
    set them as their papers do; the defaults here are GRPO's (``algorithm=grpo``)."""

    #: the recipe's label (logged); the behaviour comes from the fields below.
    name: str = "grpo"
    #: a registered advantage estimator (`reasoner.algorithms.registry`): grpo, rloo,
    #: reinforce_pp, reinforce_pp_baseline, gae, or your own.
    estimator: str = "grpo"
    #: `grpo` estimator: divide the group-centred reward by the group std (Bessel-corrected) + adv_eps.
    scale_by_std: bool = True
    adv_eps: float = 1e-6
    #: a registered policy loss: ppo_clip (token ratio), gspo (sequence ratio), or your own.
    policy_loss: str = "ppo_clip"
    #: a registered loss aggregation: token_mean (DAPO Eq. 12), seq_mean_token_mean (GRPO),
    #: seq_mean_token_sum_norm (Dr. GRPO), or your own.
    loss_agg: str = "token_mean"
    #: passes over each rollout batch, and optimizer steps per pass (the batch is shuffled and
    #: split into this many mini-batches). Old log-probs are computed once, before the first pass.
    ppo_epochs: int = 1
    mini_batches: int = 1
    #: entropy bonus: L -= entropy_coef · agg(entropy).
    entropy_coef: float = 0.0
    #: truncated importance sampling for sampler-vs-learner mismatch: each token's loss is
    #: weighted by min(π_old / π_sampler, tis_cap); 0 = off (veRL's TIS uses 2.0).
    tis_cap: float = 0.0
    #: drop truncated completions (finish_reason="length") from the loss (DAPO overlong filtering).
    mask_truncated: bool = False
    clip: ClipConfig = field(default_factory=ClipConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)

    def __post_init__(self) -> None:
        estimator = check_registered("algorithm.estimator", "advantage", self.estimator)
        check_registered("algorithm.policy_loss", "policy_loss", self.policy_loss)
        check_registered("algorithm.loss_agg", "loss_agg", self.loss_agg)
        check("algorithm.adv_eps", self.adv_eps, self.adv_eps >= 0, ">= 0")
        check("algorithm.ppo_epochs", self.ppo_epochs, self.ppo_epochs >= 1, ">= 1")
        check("algorithm.mini_batches", self.mini_batches, self.mini_batches >= 1, ">= 1")
        check("algorithm.entropy_coef", self.entropy_coef, self.entropy_coef >= 0, ">= 0")
        check("algorithm.tis_cap", self.tis_cap, self.tis_cap == 0 or self.tis_cap >= 1, "0 (off) or >= 1")
        token_level = [n for n in registry.names("advantage") if registry.get("advantage", n).token_level]
        ok = self.kl.placement is KLPlacement.loss or estimator.token_level
        allowed = f"'loss' for estimators without per-token returns (reward is allowed for {', '.join(token_level)})"
        check("algorithm.kl.placement", self.kl.placement.value, ok, allowed)

    @property
    def needs_critic(self) -> bool:
        """Whether the estimator reads critic values (the job then builds a critic)."""
        return registry.get("advantage", self.estimator).needs_critic


@dataclass
class RolloutConfig:
    backend: Backend = Backend.vllm
    temperature: float = 1.0
    top_p: float = 1.0
    #: completion budget, in tokens; longer completions are truncated (finish_reason="length").
    max_tokens: int = 128
    max_model_len: int = 1024
    #: vLLM KV-cache size on CPU, GiB (``kv_cache_memory_bytes``; vLLM allocates and zeroes it at
    #: start, so all of it is resident); on a GPU ``gpu_memory_utilization`` sizes it. The default holds 22k tokens
    #: of the embedded SmolLM2-135M in bf16 (30 layers x 3 KV heads x 64 x 2 x 2 bytes = 23 KB a
    #: token; 11k in fp32), above a default step's 64 completions x (prompt + 128 tokens); raise it
    #: for larger models or longer completions (vLLM queues the sequences that do not fit).
    kv_cache_gb: float = 0.5
    gpu_memory_utilization: float = 0.3
    #: vLLM without graph capture / torch.compile (``LLM(enforce_eager=...)``): the engine starts
    #: in seconds on CPU. False compiles the model: a longer start per engine, then more tokens/s
    #: (BENCHMARKS.md "Profile of the GRPO step"); on GPU it enables CUDA graphs. Set it False for
    #: long runs.
    enforce_eager: bool = True
    #: vLLM's sleep mode (GPUs: CUDA / ROCm) around the learner's phases, for an engine and a
    #: learner on one GPU (one process, or ``cluster.colocate=true``): after a step's generation
    #: the engine offloads its weights to CPU memory and frees its KV cache (``LLM.sleep(level=1)``),
    #: and wakes before the weight sync (``wake_up``), so scoring and the update have the GPU memory
    #: the engine held. Costs a copy of the weights each way. Needs ``rollout.backend=vllm`` and a
    #: GPU (refused on a CPU, where the engine and the learner share the host's memory and there
    #: is nothing to hand over).
    sleep_during_update: bool = False
    #: asynchronous RL (`reasoner.rollout.ahead`; README "Asynchronous RL"): the engine samples
    #: the batches of the coming steps with the weights it has while the learner trains, and a
    #: sample generated by policy version v is trained on at version at most v + max_staleness.
    #: 0: the synchronous loop (sample, then train). Above 0 the learner corrects for stale samples
    #: with the sampler's log-probs (``algorithm.tis_cap`` > 0 is required).
    max_staleness: int = 0
    #: vLLM's compute dtype. ``auto``: bfloat16 on a GPU or on a CPU with fast bf16 kernels, float32
    #: on a CPU without them, where vLLM's bf16 linear layers fall back to torch's reference GEMM
    #: (4x fewer tokens/s on an AVX2 CPU: BENCHMARKS.md, "Rollout"). The hf backend always samples in float32.
    dtype: RolloutDtype = RolloutDtype.auto
    #: at the steps `sync_check_every` picks, compare vLLM's log-probs of a fixed sequence with the learner's.
    sync_check: bool = True
    #: allowed increase (nats/token) of the mean |logprob difference| in that check over its value
    #: before training (same checkpoint on both sides); the floors and the size of a missed update
    #: are in BENCHMARKS.md "Figures moved from code comments" (`reasoner.rollout.sync`).
    sync_check_tol: float = 0.05
    #: score the engine's own greedy completion of the probe prompt at each check (one short
    #: greedy generation per check) instead of a fixed reference completion, whose floor grows as
    #: the policy moves away from it (`reasoner.rollout.sync`; README "Weight sync").
    sync_check_follow: bool = False
    #: check the first sync of the process (a new or resumed run) and then the syncs of steps that
    #: are multiples of this (1: every step; `reasoner.rollout.sync.SyncCheckCadence`). The check
    #: catches a sync that does not take: that is systematic and shows from the first sync, while a
    #: single missed update stays under the tolerance anyway (`reasoner.rollout.sync`); each check
    #: costs two scorings of the probe, ~0.3-0.5 s on the embedded default (BENCHMARKS.md, "Weight sync").
    sync_check_every: int = 10
    #: vLLM's own INFO logs (engine config, start-up steps) and the warnings it gives that are
    #: expected here and harmless (`reasoner.rollout.vllm_engine`); off keeps the console to the
    #: run's own lines. The ``VLLM_LOGGING_LEVEL`` environment variable, when set, wins.
    engine_logs: bool = False

    def __post_init__(self) -> None:
        check("rollout.temperature", self.temperature, self.temperature > 0, "> 0 for RL sampling")
        check("rollout.top_p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]")
        check(
            "rollout.max_tokens",
            self.max_tokens,
            0 < self.max_tokens < self.max_model_len,
            "in (0, rollout.max_model_len)",
        )
        check("rollout.kv_cache_gb", self.kv_cache_gb, self.kv_cache_gb > 0, "> 0")
        check(
            "rollout.gpu_memory_utilization",
            self.gpu_memory_utilization,
            0 < self.gpu_memory_utilization <= 1,
            "in (0, 1]",
        )
        check("rollout.sync_check_tol", self.sync_check_tol, self.sync_check_tol >= 0, ">= 0")
        check("rollout.sync_check_every", self.sync_check_every, self.sync_check_every >= 1, ">= 1 (1: every step)")
        check("rollout.max_staleness", self.max_staleness, self.max_staleness >= 0, ">= 0 (0: synchronous)")
        check(
            "rollout.dtype",
            RolloutDtype(self.dtype).value,
            self.backend == Backend.vllm or self.dtype != RolloutDtype.bfloat16,
            "auto or float32 with rollout.backend=hf (it samples in float32)",
        )
        check(
            "rollout.sleep_during_update",
            self.sleep_during_update,
            self.backend == Backend.vllm or not self.sleep_during_update,
            "false with rollout.backend=hf (sleep mode is vLLM's)",
        )


@dataclass
class RewardConfig:
    """The reward: a weighted sum of terms (`reasoner.rewards`), each scoring (problem, prompt,
    completion). The correctness term is the verifier's; the format term checks the answer's
    shape; `terms` adds any others (a learned reward model, an LLM judge, a rule of your own)."""

    #: the correctness verifier, built by `verifiers.registry.build_verifier`: a Hydra
    #: ``_target_`` node (class path + its own keyword arguments, e.g. the math verifier's
    #: ``timeout_s``, ``workers``, ``fallbacks``) or ``{name: NAME, ...}`` for one registered in
    #: the ``reasoner.verifiers`` entry-point group; set by conf/reward/*.yaml. The held-out
    #: evaluation judges with it too.
    verifier: Any = None
    #: weight of the correctness term, VerifyResult.score: 1/0 for math, the fraction of tests
    #: passed for code with scoring=fraction.
    correct_weight: float = 1.0
    #: weight of the format term (a final \\boxed{} answer; with template=r1, a think block too).
    format_weight: float = 0.0
    #: more terms, each a Hydra node ``{_target_: pkg.Term, weight: W, ...}`` building a
    #: `reasoner.rewards.RewardTerm` (the other keys are its keyword arguments).
    terms: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, term in enumerate(self.terms):
            ok = isinstance(term, dict) and "_target_" in term and "weight" in term
            check(f"reward.terms[{i}]", term, ok, "a node with _target_ and weight")


@dataclass
class TrainerConfig:
    #: RL steps (one rollout batch each; one or more optimizer steps per batch).
    steps: int = 30
    #: B, prompts per step (the batch holds B * G sequences).
    prompts_per_step: int = 8
    lr: float = 2e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: sequences per forward/backward; memory scales with this, not with the batch.
    micro_batch_size: int = 8
    #: token budget of a micro-batch instead (0 = off): sequences are packed, longest first, while
    #: rows x longest sequence (the padded tokens) stay within it, so memory follows tokens, not
    #: sequences (veRL's dynamic batch size, ``ppo_max_token_len_per_gpu``); a sequence longer
    #: than the budget gets a micro-batch of its own. The gradient is the same either way.
    micro_batch_tokens: int = 0
    #: completion positions per LM-head chunk: log-softmax and entropy are computed chunk by
    #: chunk, and under a gradient each chunk's (chunk, V) logits are recomputed in the backward
    #: pass instead of kept, so the logits' memory is bounded by the chunk, not the micro-batch.
    #: A micro-batch with no more positions than this runs as one chunk, kept (no recompute).
    logits_chunk_tokens: int = 2048
    #: run each micro-batch as one packed row: no padding, each prompt once, one decoder pass
    #: whose attention goes prompt by prompt and completion by completion
    #: (`reasoner.logprobs.pack_rows`, `reasoner.attention.Segments`; log-probs and gradients
    #: unchanged, tested; one group's update 11-23% faster on the CPU). Needs the learner's
    #: attention functions (`reasoner.models.load_policy`); with others the rows run padded, as
    #: with this off: padded rows, with prompt sharing's two passes. Held-out accuracy with and
    #: without it: README "Results on this machine".
    packing: bool = True
    #: activation checkpointing of the decoder layers in the RL update (recompute each layer in
    #: the backward pass): activation memory falls from every layer's to one layer's plus each
    #: layer's input, for about one more forward pass of compute. Without packing, prompt sharing
    #: is off with it (`reasoner.logprobs`: the shared prompt's key/value cache cannot be recomputed).
    gradient_checkpointing: bool = False
    #: leave out of the RL update's forward and backward passes the sequences whose advantage is
    #: 0 at every token when nothing else in the loss sees them (no KL in the loss, no entropy
    #: bonus, no critic): they add exactly nothing to the gradient, and the loss normalizers
    #: still count them, so the gradient is unchanged (tested). An optimizer step with nothing
    #: left runs no pass and steps on a zero gradient, as it would without skipping (AdamW's
    #: moments, weight decay and the LR schedule move on), counted in ``policy/empty_steps``.
    skip_zero_advantage: bool = True
    #: run learner matmuls in bf16 autocast (weights and optimizer state stay fp32); on a CPU
    #: without fast bf16 kernels (AVX2 only) the learner stays in fp32 (`reasoner.logprobs.autocast`).
    bf16_autocast: bool = True
    #: where the trained models live and compute (`reasoner.models.train_device`): ``auto`` (the
    #: first GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. Batches are
    #: built on the CPU and moved per micro-batch. With ``cluster=ray`` each learner rank uses the
    #: GPU Ray gives it (``cluster.learner.gpus_per_worker``), whatever this says.
    device: str = "auto"
    seed: int = 0
    #: torch intra-op threads; 0 = all cores.
    threads: int = 0
    #: keep freed memory in the process heap within a step (glibc: large blocks from the heap, not
    #: fresh mmaps; no trimming on free): the learner's large per-micro-batch tensors then reuse
    #: pages instead of page-faulting fresh, zeroed ones (BENCHMARKS.md "Profile of the GRPO
    #: step"). The free heap goes back to the OS when it creeps (`reasoner.jobs.common.HeapTrimmer`).
    reuse_heap: bool = True
    #: when the RL loop hands the free heap back to the OS (glibc ``malloc_trim``): ``step``, after
    #: every step: the lowest peak (the learner's and the engine's working sets are not resident at
    #: once), but every step page-faults both afresh (~1 s of a 4.5 s step on 2 CPU cores,
    #: BENCHMARKS.md "Memory of the main job"); ``slack``, only once resident memory has crept past
    #: the slack of `reasoner.jobs.common.HeapTrimmer` (as the cold start does): faster steps, GRPO
    #: steps peaking ~0.75 GiB higher in the embedded default (the job: 8.2 GB against 7.8 GB).
    heap_trim: HeapTrim = HeapTrim.step
    #: metrics sinks (`reasoner.metrics_log`): jsonl (metrics.jsonl), tensorboard, wandb (Weights &
    #: Biases, the ``wandb`` extra; offline without WANDB_API_KEY).
    loggers: list[str] = field(default_factory=lambda: ["jsonl", "tensorboard"])
    #: evaluate the held-out set on the model as loaded (``base``) before anything else.
    eval_base: bool = True
    #: held-out evaluation sampling: temperature 0 is greedy.
    eval_temperature: float = 0.0
    eval_max_tokens: int = 128
    #: also evaluate the held-out set every N RL steps (logged as eval/heldout_accuracy); 0 = off.
    eval_every: int = 0
    #: benchmarks (names in eval/benchmarks.py) also evaluated every `eval_every` steps, the
    #: last step included: `eval_benchmark_samples` samples on each of the first
    #: `eval_benchmark_problems` problems, at the benchmark's temperature and top-p, up to
    #: `eval_max_tokens` tokens; logged as eval/<name>/avg@n, pass@n, maj@n, len_mean, truncated.
    eval_benchmarks: list[str] = field(default_factory=list)
    eval_benchmark_samples: int = 4
    eval_benchmark_problems: int = 16
    #: write the final policy as an HF model (bf16 safetensors + tokenizer) to ``run_dir/checkpoint``.
    save_checkpoint: bool = True
    #: linear learning-rate warm-up over the first N RL optimizer steps (then constant); 0 = off.
    lr_warmup_steps: int = 0
    #: ``auto``: continue from the latest checkpoint in ``run_dir/checkpoints`` if there is one
    #: (else start); ``never``: start from step 0 (refused if the run dir holds checkpoints);
    #: a path: continue from that checkpoint directory, or from the latest one of that run dir.
    resume: str = "auto"
    #: write a resumable checkpoint to ``run_dir/checkpoints/step_NNNNNN`` every N RL steps
    #: (and always after the last step and on SIGTERM / SIGINT); 0 = only then.
    checkpoint_every: int = 10
    #: resumable checkpoints kept: the last K, plus the best by `best_metric` when set.
    keep_last: int = 2
    #: a metric of the step (e.g. ``eval/heldout_accuracy``, ``reward/accuracy``) whose best
    #: checkpoint is kept beyond the last K; empty = none. Steps without it are not candidates.
    best_metric: str = ""
    best_mode: BestMode = BestMode.max
    #: stop the run after this many consecutive RL steps whose update had a non-finite loss or
    #: gradient (each such optimizer step is skipped and logged as policy/skipped_updates).
    max_nonfinite_steps: int = 3
    #: stop the run after this many consecutive RL steps in which every verdict was a verifier
    #: error (each such step is not trained on; logged as reward/verifier_failed).
    max_verifier_failures: int = 3

    def __post_init__(self) -> None:
        check("trainer.steps", self.steps, self.steps >= 0, ">= 0")
        check("trainer.prompts_per_step", self.prompts_per_step, self.prompts_per_step >= 1, ">= 1")
        check("trainer.micro_batch_size", self.micro_batch_size, self.micro_batch_size >= 1, ">= 1")
        check("trainer.micro_batch_tokens", self.micro_batch_tokens, self.micro_batch_tokens >= 0, ">= 0 (0 = off)")
        check("trainer.logits_chunk_tokens", self.logits_chunk_tokens, self.logits_chunk_tokens >= 1, ">= 1")
        check("trainer.eval_every", self.eval_every, self.eval_every >= 0, ">= 0")
        check(
            "trainer.eval_benchmarks",
            self.eval_benchmarks,
            not self.eval_benchmarks or self.eval_every > 0,
            "empty unless trainer.eval_every > 0",
        )
        check("trainer.eval_benchmark_samples", self.eval_benchmark_samples, self.eval_benchmark_samples >= 1, ">= 1")
        check(
            "trainer.eval_benchmark_problems", self.eval_benchmark_problems, self.eval_benchmark_problems >= 1, ">= 1"
        )
        check(
            "trainer.device",
            self.device,
            self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device) is not None,
            "auto, cpu, cuda or cuda:N",
        )
        check("trainer.lr", self.lr, self.lr > 0, "> 0")
        check("trainer.weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
        check("trainer.grad_clip", self.grad_clip, self.grad_clip > 0, "> 0")
        check("trainer.threads", self.threads, self.threads >= 0, ">= 0 (0 = all cores)")
        check("trainer.eval_temperature", self.eval_temperature, self.eval_temperature >= 0, ">= 0 (0 = greedy)")
        check("trainer.eval_max_tokens", self.eval_max_tokens, self.eval_max_tokens >= 1, ">= 1")
        check("trainer.lr_warmup_steps", self.lr_warmup_steps, self.lr_warmup_steps >= 0, ">= 0")
        check(
            "trainer.resume", self.resume, bool(self.resume.strip()), "'auto', 'never' or a checkpoint / run directory"
        )
        check(
            "trainer.checkpoint_every",
            self.checkpoint_every,
            self.checkpoint_every >= 0,
            ">= 0 (0 = only after the last step and on a signal)",
        )
        check("trainer.keep_last", self.keep_last, self.keep_last >= 1, ">= 1")
        check("trainer.max_nonfinite_steps", self.max_nonfinite_steps, self.max_nonfinite_steps >= 1, ">= 1")
        check("trainer.max_verifier_failures", self.max_verifier_failures, self.max_verifier_failures >= 1, ">= 1")


class ClusterKind(str, Enum):
    local = "local"
    ray = "ray"


@dataclass
class LearnerPoolConfig:
    #: learner ranks: Ray actors, one ``torch.distributed`` process each, the policy (and reference,
    #: critic) sharded across them with FSDP2; the batch is split by whole groups.
    workers: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    #: keep each rank's parameters and gradients unsharded across a mini-batch's micro-batches:
    #: one all-gather and one gradient reduce-scatter per mini-batch instead of two all-gathers and
    #: a reduce-scatter per micro-batch, for the memory of the full fp32 parameters and gradients
    #: on every rank (as DDP; `reasoner.learner.Learner`). For models that fit that way.
    keep_unsharded: bool = False

    def __post_init__(self) -> None:
        check("cluster.learner.workers", self.workers, self.workers >= 1, ">= 1")
        check("cluster.learner.cpus_per_worker", self.cpus_per_worker, self.cpus_per_worker > 0, "> 0")
        check("cluster.learner.gpus_per_worker", self.gpus_per_worker, self.gpus_per_worker >= 0, ">= 0")


@dataclass
class EnginePoolConfig:
    #: rollout engines: Ray actors, each running ``rollout.backend``; a step's prompts are split
    #: across them.
    engines: int = 1
    cpus_per_engine: float = 1
    gpus_per_engine: float = 0
    #: workers per engine (vLLM's ``tensor_parallel_size``, its multiprocessing executor inside the
    #: engine's actor): on GPUs one each, so ``gpus_per_engine`` must equal it. Each worker joins
    #: the weight-update group (`reasoner.rollout.weight_receiver`).
    tensor_parallel: int = 1
    #: how often Ray restarts an engine whose process died (it then gets the current weights).
    max_restarts: int = 3

    def __post_init__(self) -> None:
        check("cluster.rollout.engines", self.engines, self.engines >= 1, ">= 1")
        check("cluster.rollout.cpus_per_engine", self.cpus_per_engine, self.cpus_per_engine > 0, "> 0")
        check("cluster.rollout.gpus_per_engine", self.gpus_per_engine, self.gpus_per_engine >= 0, ">= 0")
        check("cluster.rollout.tensor_parallel", self.tensor_parallel, self.tensor_parallel >= 1, ">= 1")
        check(
            "cluster.rollout.gpus_per_engine",
            self.gpus_per_engine,
            self.tensor_parallel == 1 or self.gpus_per_engine in (0, self.tensor_parallel),
            "cluster.rollout.tensor_parallel (a GPU per worker) or 0 (CPUs)",
        )
        check("cluster.rollout.max_restarts", self.max_restarts, self.max_restarts >= 0, ">= 0")


@dataclass
class ClusterConfig:
    """Where an RL run (``reasoner-train``) runs (`reasoner.distributed.cluster`): ``local`` (one
    process, the default) or ``ray`` (learner ranks and rollout engines as Ray actors, placed in
    one placement group; the driver runs the same RL step against them). The other jobs (SFT,
    reward model, DPO, evaluation) run in one process."""

    kind: ClusterKind = ClusterKind.local
    #: None: start a Ray cluster on this machine (with at least the CPUs the placement asks for);
    #: ``auto``: join the one ``ray start --head`` runs on this node; ``ray://HOST:10001``: a remote
    #: one through Ray Client.
    address: str | None = None
    learner: LearnerPoolConfig = field(default_factory=LearnerPoolConfig)
    rollout: EnginePoolConfig = field(default_factory=EnginePoolConfig)
    #: engine i shares learner rank i's bundle and devices (engines == workers), else split pools.
    colocate: bool = False
    #: Ray placement strategy of the group: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD.
    strategy: str = "PACK"
    #: how long to wait for the cluster to hold the placement group (seconds).
    placement_timeout_s: float = 300.0
    #: how long a learner collective may wait for the other ranks before it fails (seconds).
    collective_timeout_s: float = 600.0
    #: how the weights reach the engines after an update: ``collective`` (learner rank 0 broadcasts
    #: them to the engines over a weight-update group, `reasoner.distributed.weight_group`: NCCL
    #: when learner ranks and engines hold whole GPUs of their own, else gloo) or ``object_store``
    #: (gathered to the driver, then through Ray's object store).
    weight_sync: str = "collective"
    #: the most one broadcast of the weight-update group carries (MiB).
    weight_bucket_mb: float = 256.0

    @property
    def weight_backend(self) -> str:
        """The weight-update group's backend: NCCL when learner ranks and engines hold whole GPUs
        of their own (two processes cannot share a GPU in one NCCL group: not when colocated or
        given fractions of a GPU), else gloo."""
        whole = self.learner.gpus_per_worker >= 1 and self.rollout.gpus_per_engine >= 1
        return "nccl" if whole and not self.colocate else "gloo"

    def __post_init__(self) -> None:
        strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        check("cluster.strategy", self.strategy, self.strategy in strategies, " or ".join(strategies))
        syncs = ("collective", "object_store")
        check("cluster.weight_sync", self.weight_sync, self.weight_sync in syncs, " or ".join(syncs))
        check("cluster.weight_bucket_mb", self.weight_bucket_mb, self.weight_bucket_mb > 0, "> 0")
        ok = not self.colocate or self.rollout.engines == self.learner.workers
        check("cluster.colocate", self.colocate, ok, "false unless cluster.rollout.engines == cluster.learner.workers")
        check("cluster.placement_timeout_s", self.placement_timeout_s, self.placement_timeout_s > 0, "> 0")
        check("cluster.collective_timeout_s", self.collective_timeout_s, self.collective_timeout_s > 0, "> 0")


@dataclass
class EnvConfig:
    """Multi-turn rollouts with tools (`reasoner.envs`): with tools or an environment set, each
    rollout is an episode of model turns and tool messages; empty (the default), one completion."""

    #: tools the model may call, each ``{name: python, ...}`` (registered in the ``reasoner.tools``
    #: entry-point group: python, search) or ``{_target_: pkg.Tool, ...}``; their keys are the
    #: tool's keyword arguments.
    tools: list[Any] = field(default_factory=list)
    #: an `reasoner.envs.base.Environment` instead of the tool environment: ``{name: ...}`` (group
    #: ``reasoner.environments``) or ``{_target_: ...}``; null = `reasoner.envs.tools.ToolEnvironment`.
    environment: Any = None
    #: model turns per episode; a tool call in the last one is not run.
    max_turns: int = 4
    #: tokens of an episode after its prompt, the model's and the tool messages' (the model's
    #: turns are capped by ``rollout.max_tokens`` each).
    max_episode_tokens: int = 512
    #: tokens of one tool message's content (cut with a marker).
    max_observation_tokens: int = 256

    @property
    def enabled(self) -> bool:
        return bool(self.tools) or self.environment is not None

    def __post_init__(self) -> None:
        check("env.max_turns", self.max_turns, self.max_turns >= 1, ">= 1")
        check("env.max_episode_tokens", self.max_episode_tokens, self.max_episode_tokens >= 1, ">= 1")
        ok = self.max_observation_tokens >= 1
        check("env.max_observation_tokens", self.max_observation_tokens, ok, ">= 1")
        spec_ok = lambda spec: isinstance(spec, Mapping) and ("name" in spec or "_target_" in spec)  # noqa: E731
        for i, spec in enumerate(self.tools):
            check(f"env.tools[{i}]", spec, spec_ok(spec), "a mapping with 'name' (a registered tool) or '_target_'")
        env = self.environment
        check("env.environment", env, env is None or spec_ok(env), "null, or a mapping with 'name' or '_target_'")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    rm: RewardModelConfig = field(default_factory=RewardModelConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    env: EnvConfig = field(default_factory=EnvConfig)

    @property
    def length_budget(self) -> int:
        """The most tokens a sample's response may hold (the length terms' and
        ``seq_mean_token_sum_norm``'s L_max): ``env.max_episode_tokens`` for episodes, else
        ``rollout.max_tokens``."""
        return self.env.max_episode_tokens if self.env.enabled else self.rollout.max_tokens

    def __post_init__(self) -> None:
        """The rules that join two groups (each group checks its own fields when it is built)."""
        a, t = self.algorithm, self.trainer
        batch = t.prompts_per_step * a.sampling.group_size
        check(
            "algorithm.mini_batches",
            a.mini_batches,
            a.mini_batches <= batch,
            "<= trainer.prompts_per_step * algorithm.sampling.group_size",
        )
        ok = a.shaping.overlong_buffer < self.length_budget
        check(
            "algorithm.shaping.overlong_buffer",
            a.shaping.overlong_buffer,
            ok,
            "< rollout.max_tokens (or env.max_episode_tokens)",
        )
        workers = self.cluster.learner.workers
        ok = self.cluster.kind is ClusterKind.local or workers <= t.prompts_per_step
        check("cluster.learner.workers", workers, ok, "<= trainer.prompts_per_step (each rank trains whole groups)")
        c, ray = self.cluster, self.cluster.kind is ClusterKind.ray
        tp = c.rollout.tensor_parallel
        ok = tp == 1 or (ray and self.rollout.backend == Backend.vllm and not c.colocate)
        check("cluster.rollout.tensor_parallel", tp, ok, "1 unless cluster=ray, rollout.backend=vllm and not colocated")
        ok = not (ray and self.rollout.sleep_during_update and c.rollout.gpus_per_engine == 0)
        check("rollout.sleep_during_update", self.rollout.sleep_during_update, ok, "false for engines without GPUs")
        r = self.rollout
        ok = not (r.max_staleness and r.sleep_during_update)
        check("rollout.sleep_during_update", r.sleep_during_update, ok, "false with rollout.max_staleness > 0")
        ok = not r.max_staleness or a.tis_cap > 0
        why = "> 0 with rollout.max_staleness > 0 (stale samples need the importance weights; veRL uses 2.0)"
        check("algorithm.tis_cap", a.tis_cap, ok, why)
        checks = []
        names = [s.name for s in self.recipe.stages]
        for i, stage in enumerate(self.recipe.stages):
            checks.append(
                (
                    f"recipe.stages[{i}].name",
                    stage.name,
                    bool(stage.name.strip()) and stage.name.replace("_", "").isalnum() and stage.name not in names[:i],
                    "a unique name of letters, digits and _",
                )
            )
            checks.append(
                (
                    f"recipe.stages[{i}].overrides",
                    stage.overrides,
                    all("=" in o and not o.startswith(("recipe.", "+", "~")) for o in stage.overrides),
                    "dotted field=value items, none touching recipe.*",
                )
            )
        for name, value, ok, allowed in checks:
            check(name, value, ok, allowed)
        verifier = self.reward.verifier
        if not (isinstance(verifier, dict) and ("_target_" in verifier or "name" in verifier)):
            raise ValueError(
                f"config field reward.verifier={verifier!r} is not allowed: must be a node with "
                "'_target_' or 'name' (choose a reward group such as reward=math or reward=code)"
            )


def unknown_keys(node: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys in a composed config that its dataclass schema does not have: (dotted name, the
    fields its group does have) for each.

    Hydra lets ``+group.key=value`` add a key even to a structured config (and `OmegaConf.to_object`
    then sets it as a stray attribute), so a typo with a ``+`` would be ignored silently; the
    entry points refuse these. Free-form nodes (``Any`` or ``dict`` fields such as
    ``reward.verifier``) may hold any key.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    found: list[tuple[str, list[str]]] = []
    if isinstance(node, DictConfig):
        schema = OmegaConf.get_type(node)
        if not is_dataclass(schema):
            return found
        known = [f.name for f in fields(schema)]
        for key in node.keys():
            if key in known:
                found += unknown_keys(node._get_node(key), f"{prefix}{key}.")
            else:
                found.append((f"{prefix}{key}", known))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            found += unknown_keys(item, f"{prefix[:-1]}[{i}].")
    return found


def check_known_keys(cfg: Any) -> None:
    """Refuse a composed config (``DictConfig``) holding keys its schema lacks (`unknown_keys`).

    Raises:
        ValueError: naming each unknown key, with the closest field names (or all of them).
    """
    bad = unknown_keys(cfg)
    if not bad:
        return
    parts = []
    for name, known in bad:
        key = name.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known)}"
        parts.append(f"{name} ({hint})")
    raise ValueError(f"unknown config key(s), not a field of the schema: {'; '.join(parts)}")


def to_config(cfg: Any) -> Any:
    """A composed Hydra config (``DictConfig``) -> its dataclass (`RunConfig`, ``EvalConfig``),
    after `check_known_keys`; every group's ``__post_init__`` checks run.

    Raises:
        ValueError: an unknown key, or a field outside its allowed values (named).
    """
    from omegaconf import OmegaConf

    check_known_keys(cfg)
    return OmegaConf.to_object(cfg)


def save_config(cfg: Any, run_dir: Path, overrides: list[str]) -> None:
    """Write the run's record of its settings: ``run_dir/.hydra/config.yaml`` (the resolved config
    that runs) and ``overrides.yaml`` (the command-line overrides). The entry points call this
    once their checks have passed (Hydra's own writing, before the job runs, is off:
    ``hydra.output_subdir: null``), so a refused resume or evaluation leaves the record of what
    ran before it untouched."""
    from omegaconf import OmegaConf

    out = Path(run_dir) / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (``conf/config.yaml`` lists it first)."""
    ConfigStore.instance().store(name="schema", node=RunConfig)
