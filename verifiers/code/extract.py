"""Take the program out of a completion.

Rules (``extract=`` of `verifiers.code.CodeVerifier`):

- ``last_block`` (default): the last closed fenced block tagged ``python`` / ``py`` /
  ``python3`` or untagged (a block tagged with another language is skipped);
- ``last_python_block``: the last closed block tagged ``python`` / ``py`` / ``python3``;
- ``whole``: the completion itself (for models that answer with bare code).

An unclosed final fence (a completion cut at its token budget) yields no program.
"""

from __future__ import annotations

import re

RULES = ("last_block", "last_python_block", "whole")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^[ \t]*```", re.S | re.M)
_PYTHON_TAGS = {"python", "py", "python3"}


def extract_program(completion: str, rule: str = "last_block") -> str | None:
    """The program in `completion` under `rule`, or None if there is none.

    >>> extract_program("Here:\\n```python\\nprint(1)\\n```\\nand\\n```\\nx = 2\\n```")
    'x = 2\\n'
    >>> extract_program("```python\\nprint(1)\\n```\\n```bash\\nls\\n```")
    'print(1)\\n'

    Raises:
        ValueError: unknown rule.
    """
    if rule not in RULES:
        raise ValueError(f"unknown extraction rule {rule!r}; known: {', '.join(RULES)}")
    if rule == "whole":
        return completion if completion.strip() else None
    allowed = _PYTHON_TAGS if rule == "last_python_block" else _PYTHON_TAGS | {""}
    blocks = [m.group(2) for m in _FENCE.finditer(completion) if m.group(1).lower() in allowed]
    blocks = [b for b in blocks if b.strip()]
    return blocks[-1] if blocks else None
