"""Typed (structured) configuration for `reasoner-train`, one dataclass per Hydra group.

Every default lives here, once; YAML files under ``conf/`` only choose group options and set
the fields a recipe changes. Hydra merges YAML and command-line overrides into these dataclasses,
so an unknown key or a wrong type fails at start naming the field (``trainer.lr_typo``), and
`RunConfig.__post_init__` (run by ``OmegaConf.to_object``) checks ranges and combinations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

#: the Hydra config directory (``conf/``: reasoner-train's config.yaml, reasoner-eval's eval.yaml).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


class Backend(str, Enum):
    vllm = "vllm"
    hf = "hf"


class Template(str, Enum):
    plain = "plain"  # the model's chat template, user turn only
    r1 = "r1"  # R1-Zero style system prompt: <think> ... </think> then the boxed answer
    code = "code"  # user turn asks for a complete Python program in a ```python block


class LossAgg(str, Enum):
    token_mean = "token_mean"  # Σ ℓ / tokens in the batch (DAPO Eq. 12)
    seq_mean_token_mean = "seq_mean_token_mean"  # mean over sequences of each one's token mean (GRPO)
    seq_mean_token_sum_norm = "seq_mean_token_sum_norm"  # Σ ℓ / (sequences * rollout.max_tokens) (Dr. GRPO)


class KLEstimator(str, Enum):
    k1 = "k1"
    k2 = "k2"
    k3 = "k3"


class KLPlacement(str, Enum):
    loss = "loss"  # L += β · agg(kl)  (GRPO style)
    reward = "reward"  # r_t -= β · kl_t before returns/advantages (PPO / REINFORCE++ style)


class Estimator(str, Enum):
    grpo = "grpo"  # (R - group mean) / (group std + adv_eps); scale_by_std=false: Dr. GRPO
    rloo = "rloo"  # leave-one-out group baseline
    reinforce_pp = "reinforce_pp"  # token returns whitened over the batch
    reinforce_pp_baseline = "reinforce_pp_baseline"  # group mean subtracted, then as reinforce_pp
    gae = "gae"  # learned critic (value head on a copy of the policy backbone) + GAE


class PolicyLoss(str, Enum):
    ppo_clip = "ppo_clip"  # token-level ratio, clipped surrogate (PPO / GRPO / DAPO)
    gspo = "gspo"  # sequence-level length-normalized ratio (GSPO)


#: estimators that build per-token returns, so the KL can be a per-token reward.
TOKEN_LEVEL_ESTIMATORS = (Estimator.reinforce_pp, Estimator.reinforce_pp_baseline, Estimator.gae)


class BadRow(str, Enum):
    error = "error"
    skip = "skip"


class BestMode(str, Enum):
    max = "max"
    min = "min"


class StageKind(str, Enum):
    sft = "sft"  # supervised fine-tuning (`reasoner.sft_job`)
    rl = "rl"  # an RL run (`reasoner.train.run`)
    rejection_sampling = "rejection_sampling"  # sample, verify, keep the correct (`reasoner.rejection`)


@dataclass
class ModelConfig:
    #: ``embedded:smollm2-135m``, a local HF-format directory, or a Hugging Face hub id.
    path: str = "embedded:smollm2-135m"


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


@dataclass
class SFTConfig:
    """Cold start: supervised fine-tuning on worked solutions before RL."""

    enabled: bool = True
    #: worked-solution source: ``arithmetic`` or any source with a ``solution`` field.
    source: str = "arithmetic"
    examples: int = 512
    #: ``arithmetic`` source only: share of worked solutions written tersely (answer, no steps).
    terse_fraction: float = 0.5
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 16
    micro_batch_size: int = 8
    #: longest training sequence, in tokens (longer examples are dropped and counted).
    max_tokens: int = 256
    #: recompute activations in the backward pass (less memory, ~30% more compute).
    gradient_checkpointing: bool = False
    #: batches of similar-length examples (less padding; off by default, as in transformers).
    group_by_length: bool = False


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


@dataclass
class AlgorithmConfig:
    """The RL algorithm, as named knobs. The recipes in ``conf/algorithm/`` set them as their
    papers do; the defaults here are GRPO's (``algorithm=grpo``)."""

    #: the recipe's label (logged); the behaviour comes from the fields below.
    name: str = "grpo"
    #: G, completions sampled per prompt.
    group_size: int = 8
    estimator: Estimator = Estimator.grpo
    #: `grpo` estimator: divide the group-centred reward by the group std (Bessel-corrected) + adv_eps.
    scale_by_std: bool = True
    adv_eps: float = 1e-6
    policy_loss: PolicyLoss = PolicyLoss.ppo_clip
    #: clipped-surrogate range [1 - clip_low, 1 + clip_high] (PPO eps = 0.2; DAPO clip-higher 0.28).
    clip_low: float = 0.2
    clip_high: float = 0.2
    #: dual-clip constant c > 1 for A < 0 (veRL uses 3.0); 0 = off.
    dual_clip: float = 0.0
    loss_agg: LossAgg = LossAgg.token_mean
    #: passes over each rollout batch, and optimizer steps per pass (the batch is shuffled and
    #: split into this many mini-batches). Old log-probs are computed once, before the first pass.
    ppo_epochs: int = 1
    mini_batches: int = 1
    #: KL-to-reference coefficient β; 0 loads no reference model.
    kl_beta: float = 0.0
    kl_estimator: KLEstimator = KLEstimator.k3
    kl_placement: KLPlacement = KLPlacement.loss
    #: adaptive β (Ziegler et al. 2019): target mean per-token KL (nats); 0 = fixed β.
    kl_target: float = 0.0
    kl_horizon: int = 10000
    #: entropy bonus: L -= entropy_coef · agg(entropy).
    entropy_coef: float = 0.0
    #: truncated importance sampling for sampler-vs-learner mismatch: each token's loss is
    #: weighted by min(π_old / π_sampler, tis_cap); 0 = off (veRL's TIS uses 2.0).
    tis_cap: float = 0.0
    #: `gae` estimator: discount γ and GAE λ (Open-Reasoner-Zero: 1, 1), value clip range, critic lr.
    gamma: float = 1.0
    gae_lambda: float = 1.0
    value_clip: float = 0.2
    critic_lr: float = 5e-5
    #: DAPO soft overlong punishment: L_cache tokens before rollout.max_tokens (= L_max); 0 = off.
    overlong_buffer: int = 0
    #: drop truncated completions (finish_reason="length") from the loss (DAPO overlong filtering).
    mask_truncated: bool = False
    #: Kimi k1.5 length reward weight (0 = off), switched on after this many RL steps.
    length_reward_weight: float = 0.0
    length_reward_warmup: int = 0
    #: DAPO dynamic sampling: keep only groups with 0 < correct < G, resample prompts until the
    #: batch has trainer.prompts_per_step groups or this many generation rounds have run.
    dynamic_sampling: bool = False
    dynamic_sampling_max_rounds: int = 3


@dataclass
class RolloutConfig:
    backend: Backend = Backend.vllm
    temperature: float = 1.0
    top_p: float = 1.0
    #: completion budget, in tokens; longer completions are truncated (finish_reason="length").
    max_tokens: int = 128
    max_model_len: int = 1024
    #: vLLM KV-cache size on CPU, GiB (VLLM_CPU_KVCACHE_SPACE); GPU memory fraction on GPU.
    kv_cache_gb: int = 1
    gpu_memory_utilization: float = 0.3
    #: vLLM without graph capture / torch.compile (``LLM(enforce_eager=...)``): the engine starts
    #: in ~10 s on CPU. False compiles the model: 80-100 s more per engine start on CPU, then
    #: ~1.3x the tokens/s (SmolLM2-135M, 16 x 128 tokens, 2 cores: ~460 vs ~350); on GPU it
    #: enables CUDA graphs. Set it False for long runs.
    enforce_eager: bool = True
    #: after each weight sync, compare vLLM's log-probs of a fixed sequence with the learner's.
    sync_check: bool = True
    #: allowed increase (nats/token) of the mean |logprob difference| in that check over its value
    #: before training (same checkpoint on both sides; ~0.01 for arithmetic, ~0.06 for a long
    #: MBPP program on SmolLM2-135M). A missed tied-LM-head reload adds ~1.2; one missed update
    #: ~0.02 (caught as misses pile up).
    sync_check_tol: float = 0.05


@dataclass
class RewardConfig:
    #: the correctness verifier, built by `verifiers.registry.build_verifier`: a Hydra
    #: ``_target_`` node (class path + keyword arguments) or ``{name: NAME, ...}`` for one
    #: registered in the ``reasoner.verifiers`` entry-point group; set by conf/reward/*.yaml.
    verifier: Any = None
    #: reward = correct_weight * VerifyResult.score (+ the format term); score is 1/0 for
    #: math, the fraction of tests passed for code with scoring=fraction.
    correct_weight: float = 1.0
    #: weight of the format reward (a final \\boxed{} answer; with template=r1, a think block too).
    format_weight: float = 0.0
    #: wall-clock budget per verification, seconds (enforced by killing a worker process or
    #: the sandbox); conf/reward/*.yaml pass it to the verifier.
    timeout_s: float = 1.0
    #: verifier worker processes (about 0.4 GB resident each; verifying a GRPO batch of 64
    #: arithmetic answers takes < 0.05 s on one, so the default keeps memory low).
    workers: int = 1
    #: answer fallbacks when a completion has no \\boxed{}: "phrase", "last_number".
    answer_fallbacks: list[str] = field(default_factory=list)


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
    #: run learner matmuls in bf16 autocast (weights and optimizer state stay fp32).
    bf16_autocast: bool = True
    seed: int = 0
    #: torch intra-op threads; 0 = all cores.
    threads: int = 0
    #: keep freed memory in the process heap for the next step (glibc: large blocks from the
    #: heap, not fresh mmaps; no trimming) instead of handing it back to the OS after every step.
    #: The learner's large per-step tensors then reuse pages instead of page-faulting fresh,
    #: zeroed ones: a GRPO update of 2 x 8 x 128 tokens on the embedded default took 8.1-10.2 s
    #: instead of 14.7-18.8 s (BENCHMARKS.md). The price: the process keeps its peak heap.
    reuse_heap: bool = True
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


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        a, t = self.algorithm, self.trainer
        checks = [
            (
                "algorithm.group_size",
                self.algorithm.group_size,
                self.algorithm.group_size >= 2,
                ">= 2 (GRPO needs a group)",
            ),
            ("algorithm.clip_low", self.algorithm.clip_low, 0 < self.algorithm.clip_low < 1, "in (0, 1)"),
            ("algorithm.clip_high", self.algorithm.clip_high, self.algorithm.clip_high > 0, "> 0"),
            ("algorithm.kl_beta", self.algorithm.kl_beta, self.algorithm.kl_beta >= 0, ">= 0"),
            ("algorithm.dual_clip", a.dual_clip, a.dual_clip == 0 or a.dual_clip > 1, "0 (off) or > 1"),
            ("algorithm.ppo_epochs", a.ppo_epochs, a.ppo_epochs >= 1, ">= 1"),
            (
                "algorithm.mini_batches",
                a.mini_batches,
                1 <= a.mini_batches <= self.trainer.prompts_per_step * a.group_size,
                "in [1, trainer.prompts_per_step * algorithm.group_size]",
            ),
            (
                "algorithm.kl_placement",
                a.kl_placement.value,
                a.kl_placement is KLPlacement.loss or a.estimator in TOKEN_LEVEL_ESTIMATORS,
                "'loss' for the group estimators (the KL is a per-token reward only for reinforce_pp, reinforce_pp_baseline, gae)",
            ),
            (
                "algorithm.kl_target",
                a.kl_target,
                a.kl_target == 0 or (a.kl_target > 0 and a.kl_beta > 0),
                "0 (fixed β) or > 0 with algorithm.kl_beta > 0",
            ),
            ("algorithm.kl_horizon", a.kl_horizon, a.kl_horizon >= 1, ">= 1"),
            ("algorithm.entropy_coef", a.entropy_coef, a.entropy_coef >= 0, ">= 0"),
            ("algorithm.tis_cap", a.tis_cap, a.tis_cap == 0 or a.tis_cap >= 1, "0 (off) or >= 1"),
            ("algorithm.gamma", a.gamma, 0 <= a.gamma <= 1, "in [0, 1]"),
            ("algorithm.gae_lambda", a.gae_lambda, 0 <= a.gae_lambda <= 1, "in [0, 1]"),
            ("algorithm.value_clip", a.value_clip, a.value_clip > 0, "> 0"),
            ("algorithm.critic_lr", a.critic_lr, a.critic_lr > 0, "> 0"),
            (
                "algorithm.overlong_buffer",
                a.overlong_buffer,
                0 <= a.overlong_buffer < self.rollout.max_tokens,
                "in [0, rollout.max_tokens)",
            ),
            ("algorithm.length_reward_weight", a.length_reward_weight, a.length_reward_weight >= 0, ">= 0"),
            ("algorithm.length_reward_warmup", a.length_reward_warmup, a.length_reward_warmup >= 0, ">= 0"),
            (
                "algorithm.dynamic_sampling_max_rounds",
                a.dynamic_sampling_max_rounds,
                a.dynamic_sampling_max_rounds >= 1,
                ">= 1",
            ),
            ("trainer.steps", self.trainer.steps, self.trainer.steps >= 0, ">= 0"),
            ("trainer.prompts_per_step", self.trainer.prompts_per_step, self.trainer.prompts_per_step >= 1, ">= 1"),
            ("trainer.micro_batch_size", self.trainer.micro_batch_size, self.trainer.micro_batch_size >= 1, ">= 1"),
            ("trainer.eval_every", self.trainer.eval_every, self.trainer.eval_every >= 0, ">= 0"),
            (
                "trainer.eval_benchmarks",
                self.trainer.eval_benchmarks,
                not self.trainer.eval_benchmarks or self.trainer.eval_every > 0,
                "empty unless trainer.eval_every > 0",
            ),
            (
                "trainer.eval_benchmark_samples",
                self.trainer.eval_benchmark_samples,
                self.trainer.eval_benchmark_samples >= 1,
                ">= 1",
            ),
            (
                "trainer.eval_benchmark_problems",
                self.trainer.eval_benchmark_problems,
                self.trainer.eval_benchmark_problems >= 1,
                ">= 1",
            ),
            ("trainer.lr", self.trainer.lr, self.trainer.lr > 0, "> 0"),
            ("trainer.weight_decay", t.weight_decay, t.weight_decay >= 0, ">= 0"),
            ("trainer.grad_clip", t.grad_clip, t.grad_clip > 0, "> 0"),
            ("trainer.threads", t.threads, t.threads >= 0, ">= 0 (0 = all cores)"),
            ("trainer.eval_temperature", t.eval_temperature, t.eval_temperature >= 0, ">= 0 (0 = greedy)"),
            ("trainer.eval_max_tokens", t.eval_max_tokens, t.eval_max_tokens >= 1, ">= 1"),
            ("trainer.lr_warmup_steps", t.lr_warmup_steps, t.lr_warmup_steps >= 0, ">= 0"),
            ("trainer.resume", t.resume, bool(t.resume.strip()), "'auto', 'never' or a checkpoint / run directory"),
            (
                "trainer.checkpoint_every",
                t.checkpoint_every,
                t.checkpoint_every >= 0,
                ">= 0 (0 = only after the last step and on a signal)",
            ),
            ("trainer.keep_last", t.keep_last, t.keep_last >= 1, ">= 1"),
            ("trainer.max_nonfinite_steps", t.max_nonfinite_steps, t.max_nonfinite_steps >= 1, ">= 1"),
            ("rollout.temperature", self.rollout.temperature, self.rollout.temperature > 0, "> 0 for RL sampling"),
            ("rollout.top_p", self.rollout.top_p, 0 < self.rollout.top_p <= 1, "in (0, 1]"),
            (
                "rollout.max_tokens",
                self.rollout.max_tokens,
                0 < self.rollout.max_tokens < self.rollout.max_model_len,
                "in (0, rollout.max_model_len)",
            ),
            ("reward.timeout_s", self.reward.timeout_s, self.reward.timeout_s > 0, "> 0"),
            ("reward.workers", self.reward.workers, self.reward.workers >= 1, ">= 1"),
            ("data.heldout_n", self.data.heldout_n, self.data.heldout_n >= 1, ">= 1"),
            ("sft.terse_fraction", self.sft.terse_fraction, 0 <= self.sft.terse_fraction <= 1, "in [0, 1]"),
            ("sft.examples", self.sft.examples, self.sft.examples >= 1, ">= 1"),
            ("sft.epochs", self.sft.epochs, self.sft.epochs >= 1, ">= 1"),
            ("sft.lr", self.sft.lr, self.sft.lr > 0, "> 0"),
            ("sft.batch_size", self.sft.batch_size, self.sft.batch_size >= 1, ">= 1"),
            ("sft.micro_batch_size", self.sft.micro_batch_size, self.sft.micro_batch_size >= 1, ">= 1"),
            ("sft.max_tokens", self.sft.max_tokens, self.sft.max_tokens >= 1, ">= 1"),
            ("rollout.kv_cache_gb", self.rollout.kv_cache_gb, self.rollout.kv_cache_gb >= 1, ">= 1"),
            (
                "rollout.gpu_memory_utilization",
                self.rollout.gpu_memory_utilization,
                0 < self.rollout.gpu_memory_utilization <= 1,
                "in (0, 1]",
            ),
            ("rollout.sync_check_tol", self.rollout.sync_check_tol, self.rollout.sync_check_tol >= 0, ">= 0"),
            ("algorithm.adv_eps", a.adv_eps, a.adv_eps >= 0, ">= 0"),
            (
                "data.train",
                self.data.train,
                bool(self.data.train.strip()),
                "a source: arithmetic, vendored:NAME, a file path or an HF dataset id",
            ),
            (
                "data.heldout",
                self.data.heldout,
                bool(self.data.heldout.strip()),
                "a source: arithmetic, vendored:NAME, a file path or an HF dataset id",
            ),
            (
                "model.path",
                self.model.path,
                bool(self.model.path.strip()),
                "embedded:smollm2-135m, a local HF model directory or a hub id",
            ),
            ("data.decontaminate_ngram", self.data.decontaminate_ngram, self.data.decontaminate_ngram >= 1, ">= 1"),
            ("rejection.problems", self.rejection.problems, self.rejection.problems >= 1, ">= 1"),
            ("rejection.samples", self.rejection.samples, self.rejection.samples >= 1, ">= 1"),
            (
                "rejection.temperature",
                self.rejection.temperature,
                self.rejection.temperature > 0,
                "> 0 (sampling several completions)",
            ),
            ("rejection.top_p", self.rejection.top_p, 0 < self.rejection.top_p <= 1, "in (0, 1]"),
            (
                "rejection.max_tokens",
                self.rejection.max_tokens,
                self.rejection.max_tokens >= 1,
                ">= 1 (cut to what fits in rollout.max_model_len after the longest prompt)",
            ),
            (
                "rejection.keep_per_problem",
                self.rejection.keep_per_problem,
                1 <= self.rejection.keep_per_problem <= self.rejection.samples,
                "in [1, rejection.samples]",
            ),
        ]
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
            if not ok:
                raise ValueError(f"config field {name}={value!r} is not allowed: must be {allowed}")
        if not (
            isinstance(self.reward.verifier, dict)
            and ("_target_" in self.reward.verifier or "name" in self.reward.verifier)
        ):
            raise ValueError(
                f"config field reward.verifier={self.reward.verifier!r} is not allowed: must be a node with "
                "'_target_' or 'name' (choose a reward group such as reward=math or reward=code)"
            )
        for fb in self.reward.answer_fallbacks:
            if fb not in ("phrase", "last_number"):
                raise ValueError(
                    f"config field reward.answer_fallbacks has {fb!r}: allowed are 'phrase', 'last_number'"
                )


#: fields a resumed run may change: the budget, checkpoint / evaluation cadence, memory and
#: parallelism settings, the sampler backend and the weight-sync check. None of them is part of
#: the training state, so the run continues as it would have. Any other change is refused on
#: resume (`resume_changes`).
RESUME_SAFE_FIELDS = frozenset(
    {
        "trainer.steps",
        "trainer.resume",
        "trainer.checkpoint_every",
        "trainer.keep_last",
        "trainer.best_metric",
        "trainer.best_mode",
        "trainer.eval_every",
        "trainer.eval_benchmarks",
        "trainer.eval_benchmark_samples",
        "trainer.eval_benchmark_problems",
        "trainer.threads",
        "trainer.reuse_heap",
        "trainer.micro_batch_size",
        "trainer.save_checkpoint",
        "trainer.max_nonfinite_steps",
        "rollout.backend",
        "rollout.kv_cache_gb",
        "rollout.gpu_memory_utilization",
        "rollout.max_model_len",
        "rollout.enforce_eager",
        "rollout.sync_check",
        "rollout.sync_check_tol",
        "reward.workers",
        "reward.timeout_s",
        "reward.verifier.workers",
        "reward.verifier.timeout_s",
    }
)


def flat_config(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The resolved config as ``{"trainer.steps": 30, ...}`` (dotted field -> value; enums by name)."""
    from omegaconf import OmegaConf

    tree = (
        cfg
        if isinstance(cfg, dict)
        else OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    )
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(tree, "")
    return flat


def resume_changes(
    saved: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """Fields whose value differs between a checkpoint's config and the current one, both as
    `flat_config` gives them, split into (allowed on resume, refused): field -> (saved, current).
    A field present on one side only counts as changed (its value on the other side is
    ``"<absent>"``)."""
    allowed, refused = {}, {}
    for name in sorted(saved.keys() | current.keys()):
        old, new = saved.get(name, "<absent>"), current.get(name, "<absent>")
        if old != new:
            (allowed if name in RESUME_SAFE_FIELDS else refused)[name] = (old, new)
    return allowed, refused


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (``conf/config.yaml`` lists it first)."""
    ConfigStore.instance().store(name="schema", node=RunConfig)
