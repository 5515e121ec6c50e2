"""DAPO dynamic sampling in the step, and the length terms in the reward, with a scripted
rollout engine and verifier (no model)."""

import re

import torch
from transformers import AutoTokenizer

from reasoner.config import AlgorithmConfig, RewardConfig, RolloutConfig, SamplingConfig, ShapingConfig
from reasoner.data.stream import PromptStream
from reasoner.prompts import Template
from reasoner.rewards import add_length_terms, build_reward
from reasoner.rl_step import Timer, sample_groups, to_train_batch
from reasoner.types import Completion, Problem
from verifiers.base import VerifyResult

G = 4
DAPO = AlgorithmConfig(name="dapo", sampling=SamplingConfig(G, dynamic=True, max_rounds=5))


class ScriptedEngine:
    """Problem "p<k>" gets k correct completions out of G (answer "1"); completion g has g+1 tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = 0

    def generate(self, prompt_ids, n, temperature, top_p, max_tokens):
        self.calls += 1
        out = []
        for ids in prompt_ids:
            k = int(re.findall(r"\bp(\d)\b", self.tokenizer.decode(ids))[-1])
            out.append(
                [
                    Completion(
                        [7] * (g + 1),
                        "\\boxed{1}" if g < k else "\\boxed{0}",
                        [-1.0] * (g + 1),
                        "length" if g == n - 1 else "stop",
                    )
                    for g in range(n)
                ]
            )
        return out


class ExactVerifier:
    def verify_batch(self, pairs):
        return [
            VerifyResult(text == f"\\boxed{{{gold}}}", float(text == f"\\boxed{{{gold}}}"), None, "scripted")
            for text, gold in pairs
        ]


def _run(smol_dir, problems, algo, verifier=None, step=1):
    """The generate, reward and filter phases of one step: 2 prompts, G completions of <= 8 tokens."""
    tok = AutoTokenizer.from_pretrained(smol_dir)
    engine = ScriptedEngine(tok)
    reward = build_reward(RewardConfig(), Template.plain, verifier or ExactVerifier())
    stream = PromptStream(problems, seed=0)
    rollout = RolloutConfig(max_tokens=8)
    scored, keep, rounds, _ = sample_groups(
        step, stream, 2, tok, Template.plain, engine, reward, algo, rollout, Timer()
    )
    return scored, keep, rounds, engine


def _problems(ks):
    return [Problem(f"id{i}", f"p{k}", "1") for i, k in enumerate(ks)]


def test_dynamic_sampling_refills_with_mixed_groups(smol_dir):
    # the seeded order visits problems 4, 2 | 1, 0 | 5, 3: each of the first two rounds has one
    # mixed group (k = 2, then k = 1) and one all-wrong or all-right group, which is dropped
    scored, keep, rounds, engine = _run(smol_dir, _problems([0, 1, 4, 0, 2, 0]), DAPO)
    assert rounds == engine.calls == 2 and keep == [0, 2]
    kept = scored.take(keep)
    assert all(0 < int(c) < G for c in kept.correct.sum(1))
    assert to_train_batch(kept).rewards.shape == (2 * G,)


def test_dynamic_sampling_stops_at_the_round_cap(smol_dir):
    algo = AlgorithmConfig(sampling=SamplingConfig(G, dynamic=True, max_rounds=3))
    scored, keep, rounds, _ = _run(smol_dir, _problems([0, 4]), algo)
    assert keep == [] and rounds == 3 and scored.rewards.shape == (6, G)


def test_without_dynamic_sampling_every_group_is_kept(smol_dir):
    _, keep, rounds, _ = _run(smol_dir, _problems([0, 4]), AlgorithmConfig(sampling=SamplingConfig(G)))
    assert keep == [0, 1] and rounds == 1


def test_length_terms_are_added_to_the_reward(smol_dir):
    scored, _, _, _ = _run(smol_dir, _problems([2]), AlgorithmConfig(sampling=SamplingConfig(G)))
    shaping = ShapingConfig(overlong_buffer=4, length_weight=0.1, length_warmup=1)
    # lengths 1..4 with L_max 8, L_cache 4: no overlong penalty; step 1 is inside the warm-up
    shaped, metrics = add_length_terms(scored, shaping, 8, step=1)
    torch.testing.assert_close(shaped.rewards, scored.rewards)
    assert metrics == {"reward/overlong_penalty": 0.0}
    # step 2: k1.5 lambda = 0.5 - (len - 1) / 3 = [0.5, 1/6, -1/6, -0.5]; the 2 long ones are wrong
    shaped, metrics = add_length_terms(scored, shaping, 8, step=2)
    expected = 0.1 * torch.tensor([[0.5, 1 / 6, -1 / 6, -0.5]]).expand(2, G)  # the one problem, twice
    torch.testing.assert_close(shaped.rewards - scored.rewards, expected)
    assert "reward/length_reward" in metrics


class CrashesOnWrongAnswers(ExactVerifier):
    """A verifier with a bug: it raises on any batch holding a wrong answer."""

    def verify_batch(self, pairs):
        if any(text == "\\boxed{0}" for text, _ in pairs):
            raise ZeroDivisionError("verifier bug")
        return super().verify_batch(pairs)


def test_a_verifier_crash_scores_that_sample_zero(smol_dir):
    algo = AlgorithmConfig(sampling=SamplingConfig(G))
    scored, keep, _, _ = _run(smol_dir, _problems([3]), algo, CrashesOnWrongAnswers())
    assert scored.rewards.tolist() == [[1.0, 1.0, 1.0, 0.0]] * 2 and keep == [0, 1]  # the one problem, twice
    assert [v.reason for v in scored.verdicts[0]] == ["scripted"] * 3 + ["error: ZeroDivisionError: verifier bug"]
