"""Procedural multi-hop questions over fictional entities (ReSearch-style): answerable only by searching.

A world has regions, towns (each in a region, on its own river), people (each born in a town)
and companies (each founded by a different person, with headquarters in a town). Names are
invented from syllables; no word of a name is used by another entity or by the fact sentences,
so a BM25 search for a name finds its entity's passage first. Each entity has one passage
(title: its name; text: a few fact sentences), written as the search tool's JSON Lines corpus.

Every question takes two searches, the second for what the first found, e.g. "In which region
is the town where Velor Amsik was born?": search "Velor Amsik" (-> the town Oskavar), then
"Oskavar" (-> the region). Each `Problem` has the final name as its gold answer and, in
``meta["chain"]``, the gold searches: ``{"query", "doc_id", "fact", "found"}`` per hop (for
cold-start demonstrations). Everything is deterministic in the seeds.

The ``multihop`` data source (`reasoner.data.load_problems`) asks about `default_world`, whose
corpus `default_corpus` writes once into the reasoner cache; the search tool's ``corpus:
multihop`` names that file. Each of its problems has a worked solution (the two facts, for a
cold start without tools) and, in ``meta["turns"]``, a demonstration of the two searches (the
model's turns; the cold start runs the searches for the tool messages).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from reasoner.types import Problem

#: the world of the ``multihop`` data source and the ``multihop`` search corpus
WORLD_SEED, WORLD_PEOPLE = 0, 600

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "sk", "vr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "s", "k", "l", "m", "x")
_OCCUPATIONS = ("baker", "weaver", "sailor", "painter", "miller", "scribe", "potter", "mason")
_INDUSTRIES = ("shipping", "textile", "glassware", "mining", "printing", "brewing")
_PRODUCTS = ("wool", "salt", "amber", "copper", "barley", "honey")
_CLIMATES = ("mild", "dry", "cold", "rainy", "windy")
_SUFFIXES = ("Works", "Trading", "Guild", "Foundry")

# question template -> (subject kind, the relation followed by each hop)
TEMPLATES = {
    "In which region is the town where {} was born?": ("person", ("town", "region")),
    "On which river lies the town where {} was born?": ("person", ("town", "river")),
    "In which town was the founder of {} born?": ("company", ("founder", "town")),
    "In which region are the headquarters of {}?": ("company", ("hq", "region")),
}
# kind -> relation -> the sentence stating it ({name}: the entity's name)
_FACTS = {
    "region": {
        "product": "{name} is a region known for its {product}.",
        "climate": "The climate of {name} is {climate}.",
    },
    "town": {
        "region": "{name} is a town in the region of {region}.",
        "river": "{name} lies on the {river} river.",
        "founded": "{name} was founded in {year}.",
    },
    "person": {"occupation": "{name} is a {occupation}.", "town": "{name} was born in {town} in {year}."},
    "company": {
        "industry": "{name} is a {industry} company.",
        "founder": "{name} was founded by {founder} in {year}.",
        "hq": "The headquarters of {name} are in {hq}.",
    },
}
# words no invented name may be (so a search for a name matches nothing else)
_TEXTS = [*TEMPLATES, *(f for facts in _FACTS.values() for f in facts.values())]
_WORDS = [*_OCCUPATIONS, *_INDUSTRIES, *_PRODUCTS, *_CLIMATES, *_SUFFIXES]
_RESERVED = frozenset(re.findall(r"[a-z]+", re.sub(r"\{\w*\}", " ", " ".join(_TEXTS + _WORDS)).lower()))


@dataclass(frozen=True)
class Entity:
    """One region, town, person or company.

    Attributes:
        links: relation -> the name it leads to (``town``, ``region``, ``river``, ``founder``, ``hq``).
        facts: relation -> the sentence of the passage that states it (the passage is all of them).
    """

    id: str
    kind: str
    name: str
    links: dict[str, str]
    facts: dict[str, str]

    @property
    def text(self) -> str:
        return " ".join(self.facts.values())


@dataclass(frozen=True)
class World:
    """The entities of a world (regions, towns, people, companies, in that order)."""

    seed: int
    entities: tuple[Entity, ...]

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities if e.kind == kind]


def build_world(
    seed: int, n_people: int, n_towns: int | None = None, n_regions: int | None = None, n_companies: int | None = None
) -> World:
    """A world of `n_people` people, `n_towns` towns (default n_people // 4, at least 2),
    `n_regions` regions (default n_towns // 3, at least 2) and `n_companies` companies (default
    n_people // 2, at most n_people: each has its own founder). Deterministic in its arguments.

    Raises:
        ValueError: a count below 1 (companies: below 0), or more companies than people.
    """
    n_towns = max(2, n_people // 4) if n_towns is None else n_towns
    n_regions = max(2, n_towns // 3) if n_regions is None else n_regions
    n_companies = n_people // 2 if n_companies is None else n_companies
    if min(n_people, n_towns, n_regions) < 1 or not 0 <= n_companies <= n_people:
        raise ValueError(
            f"build_world: bad counts people={n_people} towns={n_towns} regions={n_regions} "
            f"companies={n_companies} (each >= 1; 0 <= companies <= people)"
        )
    rng, seen = random.Random(seed), set(_RESERVED)

    def word(syllables: int) -> str:
        for _ in range(10_000):
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
            if len(w) >= 5 and w not in seen:
                seen.add(w)
                return w.capitalize()
        raise ValueError(f"build_world: ran out of {syllables}-syllable names")

    entities: list[Entity] = []

    def add(kind: str, name: str, links: dict[str, str], **values: object) -> None:
        facts = {rel: f.format(name=name, **links, **values) for rel, f in _FACTS[kind].items()}
        entities.append(Entity(f"{kind}-{len(entities)}", kind, name, links, facts))

    regions = [word(3) for _ in range(n_regions)]
    for r in regions:
        add("region", r, {}, product=rng.choice(_PRODUCTS), climate=rng.choice(_CLIMATES))
    towns = [word(rng.choice((2, 3))) for _ in range(n_towns)]
    for i, t in enumerate(towns):
        add("town", t, {"region": regions[i % n_regions], "river": word(2)}, year=rng.randint(900, 1700))
    people = [f"{word(2)} {word(rng.choice((2, 3)))}" for _ in range(n_people)]
    for p in people:
        add("person", p, {"town": rng.choice(towns)}, occupation=rng.choice(_OCCUPATIONS), year=rng.randint(1800, 1990))
    for founder in rng.sample(people, n_companies):
        links = {"founder": founder, "hq": rng.choice(towns)}
        add(
            "company",
            f"{word(2)} {rng.choice(_SUFFIXES)}",
            links,
            industry=rng.choice(_INDUSTRIES),
            year=rng.randint(1850, 2010),
        )
    return World(seed, tuple(entities))


def corpus_rows(world: World) -> list[dict[str, str]]:
    """The search corpus: one ``{"id", "title", "text"}`` row per entity."""
    return [{"id": e.id, "title": e.name, "text": e.text} for e in world.entities]


def write_corpus(world: World, path: str | Path) -> Path:
    """Write `corpus_rows` as JSON Lines to `path` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in corpus_rows(world)), encoding="utf-8")
    return path


def problems(world: World, n: int, seed: int, exclude: Iterable[str] = ()) -> list[Problem]:
    """`n` distinct 2-hop questions about `world`, none about a subject of a question in `exclude`
    (whose text names it), drawn with `seed` from every (template, subject) pair. The gold answer
    is a name; ``meta`` has ``template``, ``hops``, ``chain`` (see the module docstring) and
    ``turns`` (`search_turns`); the solution states the two facts.

    Raises:
        ValueError: `n` is more than the distinct questions available.
    """
    excluded = set(exclude)
    # an excluded question's subject is asked about in no other template either (held-out subjects
    # stay unseen); its name is in the question's text
    taken = {e.name for e in world.entities if any(e.name in text for text in excluded)}
    pool = [(t, e) for t, (kind, _) in TEMPLATES.items() for e in world.of_kind(kind) if e.name not in taken]
    if n > len(pool):
        raise ValueError(f"multihop: asked for {n} questions, the world has {len(pool)} (grow n_people)")
    by_name = {e.name: e for e in world.entities}
    out = []
    for template, subject in random.Random(seed).sample(pool, n):
        chain, name = [], subject.name
        for relation in TEMPLATES[template][1]:
            e = by_name[name]
            name = e.links[relation]
            chain.append({"query": e.name, "doc_id": e.id, "fact": e.facts[relation], "found": name})
        meta = {
            "template": template,
            "hops": len(chain),
            "chain": chain,
            "world_seed": world.seed,
            "turns": search_turns(chain, name),
        }
        solution = " ".join(hop["fact"] for hop in chain)
        out.append(
            Problem(f"multihop-w{world.seed}-s{seed}-{len(out)}", template.format(subject.name), name, solution, meta)
        )
    return out


def search_turns(chain: list[dict], answer: str) -> list[str]:
    """The model's turns of a search demonstration: one search per hop (each after the fact the
    previous one found), then the answer."""
    turns, said = [], ""
    for hop in chain:
        turns.append(f"{said}I need to look up {hop['query']}.\n<search>{hop['query']}</search>")
        said = hop["fact"] + " "
    turns.append(f"{said}The final answer is \\boxed{{{answer}}}.")
    return turns


@functools.cache
def default_world() -> World:
    """The world of the ``multihop`` data source (`WORLD_SEED`, `WORLD_PEOPLE`)."""
    return build_world(WORLD_SEED, WORLD_PEOPLE)


def default_corpus() -> Path:
    """`default_world`'s corpus in the reasoner cache (written once, atomically)."""
    from reasoner.models import cache_dir

    path = cache_dir() / "multihop" / f"world-s{WORLD_SEED}-n{WORLD_PEOPLE}.jsonl"
    if not path.exists():
        tmp = write_corpus(default_world(), path.with_suffix(f".tmp{os.getpid()}"))
        tmp.rename(path)
    return path
