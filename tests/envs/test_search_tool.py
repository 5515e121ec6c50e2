"""The search tool (reasoner/envs/search_tool.py) over the procedural multi-hop corpus (reasoner/data/multihop.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from reasoner.data import multihop
from reasoner.envs.base import ToolOutput
from reasoner.envs.search_tool import NO_RESULTS, SearchTool


@pytest.fixture(scope="module")
def world() -> multihop.World:
    return multihop.build_world(seed=3, n_people=40)


@pytest.fixture(scope="module")
def corpus(world: multihop.World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return multihop.write_corpus(world, tmp_path_factory.mktemp("search") / "corpus.jsonl")


@pytest.fixture(scope="module")
def tool(corpus: Path) -> SearchTool:
    return SearchTool(corpus)


def search(tool: SearchTool, *queries: str) -> list[ToolOutput]:
    return tool.run([(tool.new_state(), q) for q in queries])


def test_person_passage_ranks_first(tool: SearchTool, world: multihop.World) -> None:
    people = world.of_kind("person")
    outputs = search(tool, *[p.name for p in people])
    for person, out in zip(people, outputs):
        assert out.error is None
        assert out.text.startswith(f"[1] {person.name}: {person.text}")
        assert len(out.text.splitlines()) <= 3


def test_two_hop_problem_answerable_by_two_searches(tool: SearchTool, world: multihop.World) -> None:
    for problem in multihop.problems(world, 40, seed=0):
        first, second = problem.meta["chain"]
        assert first["query"] in problem.problem and problem.answer not in problem.problem
        (out1,) = search(tool, first["query"])
        assert first["fact"] in out1.text and first["found"] in out1.text
        assert second["query"] == first["found"]  # the second search is for what the first found
        (out2,) = search(tool, second["query"])
        assert second["fact"] in out2.text and second["found"] == problem.answer
        assert re.search(rf"\b{problem.answer}\b", out2.text)


def test_megabyte_query_is_cheap(tool: SearchTool, world: multihop.World) -> None:
    name = world.of_kind("person")[0].name
    start = time.monotonic()
    outputs = search(tool, "q" * 1_000_000, (name + " ") * 200_000)
    assert time.monotonic() - start < 2.0
    assert all(isinstance(o, ToolOutput) for o in outputs)
    assert outputs[0].text == NO_RESULTS and outputs[0].error is None
    assert outputs[1].text.startswith(f"[1] {name}:")


def test_unknown_words_give_no_results_without_bm25(tool: SearchTool, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("bm25s called for a query with no known term")

    monkeypatch.setattr(tool._bm25, "retrieve", boom)
    outputs = search(tool, "zzqx vvqw", "the and of", "?! a", " \n ")
    assert [(o.text, o.error) for o in outputs[:3]] == [(NO_RESULTS, None)] * 3
    assert outputs[3].error == "malformed"


def test_batch_order_kept_and_empty_query_malformed(tool: SearchTool, world: multihop.World) -> None:
    names = [e.name for e in world.entities[::7]]
    outputs = search(tool, names[0], "", *names[1:])
    assert outputs[1].error == "malformed" and outputs[1].text
    for name, out in zip(names, [outputs[0], *outputs[2:]]):
        assert out.text.startswith(f"[1] {name}:")
    assert len({o.seconds for o in outputs}) == 1  # the batch's wall time


def test_passages_are_cut(corpus: Path, world: multihop.World) -> None:
    tool = SearchTool(corpus, top_k=1, max_passage_chars=10)
    company = world.of_kind("company")[0]
    (out,) = search(tool, company.name)
    assert out.text == f"[1] {company.name}: {company.text[:10]}..."


def test_timeout_then_unavailable_while_the_worker_runs(corpus: Path, world: multihop.World) -> None:
    tool = SearchTool(corpus, timeout_s=0.05)
    real = tool._bm25.retrieve
    tool._bm25.retrieve = lambda *a, **k: (time.sleep(0.5), real(*a, **k))[1]
    name = world.of_kind("town")[0].name
    assert [o.error for o in search(tool, name, "zzqx", name)] == ["timeout", None, "timeout"]
    assert search(tool, name)[0].error == "unavailable"
    tool._worker.join()
    tool._bm25.retrieve = real
    assert search(tool, name)[0].text.startswith(f"[1] {name}:")


def test_missing_or_bad_corpus_raises_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        SearchTool(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "T", "text": "x y"}\n{"id": "b", "title": "T"}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: line 2: field 'text'"):
        SearchTool(bad)


def test_generator_deterministic_and_names_unique() -> None:
    world = multihop.build_world(seed=7, n_people=60)
    assert world == multihop.build_world(seed=7, n_people=60)
    assert world != multihop.build_world(seed=8, n_people=60)
    assert multihop.problems(world, 50, seed=1) == multihop.problems(world, 50, seed=1)
    assert multihop.problems(world, 50, seed=1) != multihop.problems(world, 50, seed=2)
    names = [e.name for e in world.entities] + [e.links["river"] for e in world.of_kind("town")]
    assert len(names) == len(set(names))
    words = [w for n in names for w in n.split() if w not in {"Works", "Trading", "Guild", "Foundry"}]
    assert len(words) == len(set(words))
    with pytest.raises(ValueError, match="asked for"):
        multihop.problems(world, 10_000, seed=0)
