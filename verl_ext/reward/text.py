"""Split a decoded multi-turn response into the assistant's turns and find its final answer.

``solution_str`` is the whole response veRL decoded: assistant turns with the tool responses the
chat template put between them. veRL's reward loop decodes with ``skip_special_tokens=True``, so a
tool response reads ``user\\n<tool_response>...</tool_response>\\nassistant\\n``; decoded with special
tokens kept it reads ``<|im_start|>user\\n<tool_response>...</tool_response><|im_end|>\\n<|im_start|>assistant\\n``.
Both reduce to the first form once Qwen's ``<|...|>`` special tokens are removed.
"""

from __future__ import annotations

import re

#: Qwen's special tokens (<|im_start|>, <|im_end|>, <|vision_start|>, <|image_pad|>, <|box_start|>, ...).
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
#: One user turn of tool responses, with the chat-template role words around it.
_TOOL_TURN = re.compile(r"\buser\s*(?:<tool_response>.*?</tool_response>\s*)+(?:assistant\b[ \t]*\n?)?", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def strip_special_tokens(text: str) -> str:
    """Remove Qwen's ``<|...|>`` special tokens, as ``skip_special_tokens=True`` decoding does."""
    return _SPECIAL_TOKEN.sub("", text)


def assistant_turns(solution_str: str) -> list[str]:
    """The assistant's turns, in order, with the tool-response turns between them cut out."""
    return _TOOL_TURN.split(strip_special_tokens(solution_str))


def final_answer(turns: list[str]) -> str | None:
    """Content of the last ``<answer>...</answer>`` the assistant wrote (stripped); None when there is none."""
    for turn in reversed(turns):
        found = _ANSWER.findall(turn)
        if found:
            return found[-1].strip()
    return None
