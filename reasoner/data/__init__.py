"""Everything about the problems a job reads: sources and row validation (`sources`), the
procedural generators (`arithmetic`, `multihop`), decontamination against evaluation sets
(`decontaminate`), the seeded prompt stream of RL (`stream`), and the vendored files
(``vendored/``, with their origins and licenses in ``vendored/SOURCES.md``)."""

from reasoner.data.sources import GENERATED, VENDORED, BadRowError, load_problems

__all__ = ["GENERATED", "VENDORED", "BadRowError", "load_problems"]
