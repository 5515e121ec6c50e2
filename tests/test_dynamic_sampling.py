"""DAPO dynamic sampling in the step, and the length terms in the reward, with a scripted
rollout engine and verifier (no model)."""

import re

import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer

from reasoner.config import register_configs
from reasoner.rewards import add_length_terms
from reasoner.rl_step import PromptSampler, Timer, sample_groups, to_train_batch
from reasoner.config import CONF_DIR
from reasoner.jobs.cli import to_run_config
from reasoner.types import Completion, Problem
from verifiers.base import VerifyResult

register_configs()
G = 4


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


def _cfg(extra):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        base = ["trainer.prompts_per_step=2", f"algorithm.group_size={G}", "rollout.max_tokens=8"]
        return to_run_config(compose(config_name="config", overrides=base + extra))


def _run(smol_dir, problems, extra):
    tok = AutoTokenizer.from_pretrained(smol_dir)
    engine = ScriptedEngine(tok)
    cfg = _cfg(extra)
    scored, keep, rounds = sample_groups(PromptSampler(problems, seed=0), engine, ExactVerifier(), tok, cfg, Timer())
    return scored, keep, rounds, engine


def _problems(ks):
    return [Problem(f"id{i}", f"p{k}", "1") for i, k in enumerate(ks)]


def test_dynamic_sampling_refills_with_mixed_groups(smol_dir):
    # the seeded order visits problems 4, 2 | 1, 0 | 5, 3: each of the first two rounds has one
    # mixed group (k = 2, then k = 1) and one all-wrong or all-right group, which is dropped
    extra = ["algorithm=dapo", "algorithm.overlong_buffer=4", "algorithm.dynamic_sampling_max_rounds=5"]
    scored, keep, rounds, engine = _run(smol_dir, _problems([0, 1, 4, 0, 2, 0]), extra)
    assert rounds == engine.calls == 2 and keep == [0, 2]
    kept = scored.take(keep)
    assert all(0 < int(c) < G for c in kept.correct.sum(1))
    assert to_train_batch(kept).rewards.shape == (2 * G,)


def test_dynamic_sampling_stops_at_the_round_cap(smol_dir):
    scored, keep, rounds, _ = _run(
        smol_dir,
        _problems([0, 4]),
        ["algorithm=dapo", "algorithm.overlong_buffer=4", "algorithm.dynamic_sampling_max_rounds=3"],
    )
    assert keep == [] and rounds == 3 and scored.rewards.shape == (6, G)


def test_without_dynamic_sampling_every_group_is_kept(smol_dir):
    _, keep, rounds, _ = _run(smol_dir, _problems([0, 4]), [])
    assert keep == [0, 1] and rounds == 1


def test_length_terms_are_added_to_the_reward(smol_dir):
    scored, _, _, _ = _run(
        smol_dir,
        _problems([2]),
        ["algorithm.overlong_buffer=4", "algorithm.length_reward_weight=0.1", "algorithm.length_reward_warmup=1"],
    )
    cfg = _cfg(
        ["algorithm.overlong_buffer=4", "algorithm.length_reward_weight=0.1", "algorithm.length_reward_warmup=1"]
    )
    # lengths 1..4 with L_max 8, L_cache 4: no overlong penalty; step 1 is inside the warm-up
    shaped, metrics = add_length_terms(scored, cfg.algorithm, cfg.rollout.max_tokens, step=1)
    torch.testing.assert_close(shaped.rewards, scored.rewards)
    assert metrics == {"reward/overlong_penalty": 0.0}
    # step 2: k1.5 lambda = 0.5 - (len - 1) / 3 = [0.5, 1/6, -1/6, -0.5]; the 2 long ones are wrong
    shaped, metrics = add_length_terms(scored, cfg.algorithm, cfg.rollout.max_tokens, step=2)
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
    tok = AutoTokenizer.from_pretrained(smol_dir)
    scored, keep, _ = sample_groups(
        PromptSampler(_problems([3]), seed=0),
        ScriptedEngine(tok),
        CrashesOnWrongAnswers(),
        tok,
        _cfg(["reward.format_weight=0"]),
        Timer(),
    )
    assert scored.rewards.tolist() == [[1.0, 1.0, 1.0, 0.0]] * 2 and keep == [0, 1]  # the one problem, twice
    assert [v.reason for v in scored.verdicts[0]] == ["scripted"] * 3 + ["error: ZeroDivisionError: verifier bug"]
