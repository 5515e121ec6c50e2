"""The tool environment with the real tools (issue 22, acceptance 4): hostile calls are contained,
each answered by an observation, and the episode goes on; registry and config errors name the
field."""

import time

import pytest

from reasoner.config import EnvConfig
from reasoner.data.multihop import build_world, write_corpus
from reasoner.envs.registry import build_environment
from reasoner.envs.render import TRUNCATED, ToolMessages

FORK_BOMB = "import os\nwhile True:\n    os.fork()"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    write_corpus(build_world(seed=0, n_people=20), corpus)
    cfg = EnvConfig(tools=[{"name": "python", "timeout_s": 2.0}, {"name": "search", "corpus": str(corpus)}])
    environment = build_environment(cfg)
    yield environment
    environment.close()


def test_hostile_calls_get_observations_and_the_episode_goes_on(env):
    turns = [
        "Let me loop. <python>while True:\n    pass</python>",
        f"<python>{FORK_BOMB}</python>",
        "<search>" + "town region river " * 70_000 + "</search>",  # a 1.3 MB query of corpus words
        "<python>print(6 * 7)</python>",
        "The answer is \\boxed{42}.",
    ]
    start = time.monotonic()
    steps = env.step([env.reset() for _ in turns], turns)
    assert time.monotonic() - start < 15  # the python calls run side by side, 2 s limit each
    loop, bomb, query, ok, answer = steps
    assert loop.info["error"] == "timeout" and not loop.done and "ran past 2" in loop.observation
    assert not bomb.done and bomb.observation  # contained: an error or a timeout, as text
    assert not query.done and query.info["tool"] == "search" and len(query.observation) < 2000
    assert ok.observation.strip() == "42" and ok.info["error"] is None
    assert answer.done and answer.observation is None


def test_the_python_state_lives_in_its_episode_only(env):
    a, b = env.reset(), env.reset()
    env.step([a], ["<python>x = 41</python>"])
    first, second = env.step([a, b], ["<python>x + 1</python>", "<python>x + 1</python>"])
    assert first.observation.strip() == "42"
    assert second.info["error"] == "error" and "NameError" in second.observation


def test_instructions_and_stop_strings_name_every_tool(env):
    assert env.stop == ("</python>", "</search>")
    assert "<python>...</python>" in env.instructions and "<search>...</search>" in env.instructions


def test_a_long_observation_is_cut_to_its_token_budget(smol_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_dir)
    messages = ToolMessages(tok, max_tokens=16)
    ids = messages.ids("x = 1\n" * 100_000)
    assert len(ids) < 16 + 30 and TRUNCATED in tok.decode(ids)


def test_unknown_tools_and_bad_specs_are_named():
    with pytest.raises(ValueError, match=r"env.tools\[0\]: nothing named 'calculator'.*registered: python, search"):
        build_environment(EnvConfig(tools=[{"name": "calculator"}]))
    with pytest.raises(ValueError, match=r"config field env.tools\[0\]=.*must be a mapping with 'name'"):
        EnvConfig(tools=["python"])
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        build_environment(EnvConfig(tools=[{"name": "search", "corpus": "/nowhere.jsonl"}]))
    assert build_environment(EnvConfig()) is None
