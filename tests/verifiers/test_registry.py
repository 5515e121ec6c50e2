"""Verifier registry: docs/custom_verifier.md's example runs through Hydra `_target_` and an
entry point, and bad specs are named."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from reasoner.config import CONF_DIR, register_configs
from reasoner.jobs.cli import to_run_config
from verifiers.code import CodeVerifier
from verifiers.registry import build_verifier

register_configs()
DOC = Path(__file__).resolve().parents[2] / "docs" / "custom_verifier.md"


def _doc_block(first_line: str) -> str:
    """The fenced block of the doc whose first line is `first_line`."""
    for body in re.findall(r"```\w*\n(.*?)```", DOC.read_text(), re.S):
        if body.startswith(first_line):
            return body
    raise AssertionError(f"no block starting {first_line!r} in {DOC}")


@pytest.fixture
def example_package(tmp_path, monkeypatch):
    """The doc's verifier as an importable package, plus an installed-looking dist-info that
    registers it in the reasoner.verifiers entry-point group."""
    pkg = tmp_path / "my_verifiers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "exact.py").write_text(_doc_block("# my_verifiers/exact.py"))
    toml = _doc_block("# pyproject.toml of your package")
    target = re.search(r'exact = "(.*)"', toml).group(1)
    dist = tmp_path / "my_verifiers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-verifiers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[reasoner.verifiers]\nexact = {target}\n")
    conf = tmp_path / "my_conf" / "reward"
    conf.mkdir(parents=True)
    (conf / "exact.yaml").write_text(_doc_block("# my_conf/reward/exact.yaml"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_verifiers.exact", None)
    sys.modules.pop("my_verifiers", None)


def _check_exact(verifier) -> None:
    results = verifier.verify_batch([("work...\n  Paris ", "paris"), ("Lyon", "Paris"), ("", "x")])
    assert [(r.correct, r.score, r.reason) for r in results] == [
        (True, 1.0, "string match"),
        (False, 0.0, "mismatch"),
        (False, 0.0, "no answer"),
    ]
    verifier.close()


def test_doc_example_through_hydra_target(example_package):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = to_run_config(
            compose(
                config_name="config",
                overrides=[f"hydra.searchpath=[file://{example_package / 'my_conf'}]", "reward=exact"],
            )
        )
    assert cfg.reward.verifier == {"_target_": "my_verifiers.exact.ExactMatch", "case_sensitive": False}
    _check_exact(build_verifier(cfg.reward.verifier))


def test_doc_example_through_entry_point(example_package):
    _check_exact(build_verifier({"name": "exact", "case_sensitive": False}))


def test_reward_groups_build_their_verifiers():
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = to_run_config(compose(config_name="config", overrides=["reward=code", "reward.verifier.timeout_s=7"]))
    verifier = build_verifier(cfg.reward.verifier)
    assert isinstance(verifier, CodeVerifier) and verifier.timeout_s == 7.0


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="no verifier named 'nope'.*registered"):
        build_verifier({"name": "nope"})
    with pytest.raises(ValueError, match="needs '_target_'"):
        build_verifier({"timeout_s": 1})
    with pytest.raises(TypeError, match="dict is not a verifier"):
        build_verifier({"_target_": "builtins.dict"})
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        with pytest.raises(ValueError, match="reward.verifier=None"):
            to_run_config(compose(config_name="config", overrides=["reward.verifier=null"]))
