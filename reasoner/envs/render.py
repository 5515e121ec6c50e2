"""A tool message as token ids appended to an episode, in the model's own chat format.

The model's turn ends at a closing tag (a stop string), not at its end-of-turn token, so what is
appended closes the assistant turn, holds the tool message, and opens the next assistant turn:
with SmolLM2's template ``<|im_end|>\\n<|im_start|>tool\\n{output}<|im_end|>\\n<|im_start|>assistant\\n``.
The pieces around the output are found by rendering a conversation with and without a tool
message through the tokenizer's chat template and taking the difference (rendering the tool
message alone would add the template's default system message), so any template with a ``tool``
role works; one without it (the template raises) gets the output as a ``user`` message. The
episode's own tokens are never re-tokenized: the learner scores exactly the ids the sampler drew.
"""

from __future__ import annotations

from typing import Any

_OBS, _REPLY = "\x00OBSERVATION\x00", "\x00REPLY\x00"
TRUNCATED = "\n[... truncated]"


class ToolMessages:
    """Token ids of tool messages for `tokenizer` (a transformers tokenizer with a chat template).

    The output is cleaned of the tokenizer's special-token strings first (a zero-width space after
    their first character), so that a program printing ``<|im_start|>assistant`` cannot forge a
    turn, and cut to `max_tokens` tokens (with a marker).

    Raises:
        ValueError: the template renders the conversation without the assistant turn as a prefix
            of the one with it (no difference to take).
    """

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.role = "tool"
        try:
            self.head, self.tail = self._pieces("tool")
        except Exception:  # a template without a tool role (it raises on one)
            self.role = "user"
            self.head, self.tail = self._pieces("user")
        self.specials = sorted({t for t in tokenizer.all_special_tokens if len(t) > 1}, key=len, reverse=True)

    def _pieces(self, role: str) -> tuple[str, str]:
        render = self.tokenizer.apply_chat_template
        base = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": _REPLY}]
        before = render(base, tokenize=False)
        after = render([*base, {"role": role, "content": _OBS}], tokenize=False, add_generation_prompt=True)
        if not after.startswith(before) or _REPLY not in before or _OBS not in after:
            raise ValueError("the chat template does not render a tool message after an assistant turn")
        closer = before[before.index(_REPLY) + len(_REPLY) :]  # what ends the assistant turn
        head, tail = after[len(before) :].split(_OBS)
        return closer + head, tail

    def clean(self, text: str) -> str:
        """`text` with every special-token string broken by a zero-width space."""
        for s in self.specials:
            text = text.replace(s, s[0] + "\u200b" + s[1:])
        return text

    def ids(self, output: str) -> list[int]:
        """The tokens to append after a model turn that ended with a tool call whose result is
        `output` (text): the closing of the turn, the tool message, the next turn's opening."""
        tok, text = self.tokenizer, self.clean(output)
        body = tok(text, add_special_tokens=False)["input_ids"]
        if len(body) > self.max_tokens:
            text = tok.decode(body[: self.max_tokens]) + TRUNCATED
        return tok(self.head + text + self.tail, add_special_tokens=False)["input_ids"]
