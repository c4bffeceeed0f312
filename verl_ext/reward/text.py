"""Split a decoded multi-turn response into the assistant's turns and find its final answer.

``solution_str`` is the whole response veRL decoded: assistant turns with the tool responses the
chat template put between them. veRL's reward loop decodes with ``skip_special_tokens=True``, so a
tool response reads ``user\\n<tool_response>...</tool_response>\\nassistant\\n``; decoded with special
tokens kept it reads ``<|im_start|>user\\n<tool_response>...</tool_response><|im_end|>\\n<|im_start|>assistant\\n``.
Both reduce to the first form once Qwen's ``<|...|>`` special tokens are removed.

Bounded and linear on any text: only the last :data:`MAX_RESPONSE_CHARS` characters are read (the answer
is at the end; a longer response is degenerate, and its cut first turn fails the format check), tags are
found with ``str.find``/``rfind`` from left to right, never by a lazy regex tried at every position.
"""

from __future__ import annotations

import re

#: A response is read from its last this many characters (4096 tokens of prose are about 16 KB).
MAX_RESPONSE_CHARS = 32768
#: A longer final answer is not an answer (it scores as none): it also bounds every answer scorer's work.
MAX_ANSWER_CHARS = 4096

#: Qwen's special tokens (<|im_start|>, <|im_end|>, <|vision_start|>, <|image_pad|>, <|box_start|>, ...).
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
#: Start of a user turn of tool responses, and the next response within it.
_TOOL_TURN_START = re.compile(r"\buser\s*+<tool_response>")
_NEXT_RESPONSE = re.compile(r"\s*+<tool_response>")
#: What ends a tool turn: whitespace, then the chat template's role word of the next assistant turn.
_ROLE_END = re.compile(r"\s*+(?:assistant\b[ \t]*+\n?)?")
_CLOSE_RESPONSE = "</tool_response>"
_OPEN_ANSWER, _CLOSE_ANSWER = "<answer>", "</answer>"


def strip_special_tokens(text: str) -> str:
    """Remove Qwen's ``<|...|>`` special tokens, as ``skip_special_tokens=True`` decoding does."""
    return _SPECIAL_TOKEN.sub("", text)


def assistant_turns(solution_str: str) -> list[str]:
    """The assistant's turns, in order, with the tool-response turns between them cut out."""
    text = strip_special_tokens(solution_str[-MAX_RESPONSE_CHARS:])
    turns: list[str] = []
    turn_start = position = 0
    while (start := _TOOL_TURN_START.search(text, position)) is not None:
        end = text.find(_CLOSE_RESPONSE, start.end())
        if end < 0:  # no later tool turn can close either
            break
        end += len(_CLOSE_RESPONSE)
        while (more := _NEXT_RESPONSE.match(text, end)) is not None:
            close = text.find(_CLOSE_RESPONSE, more.end())
            if close < 0:
                break
            end = close + len(_CLOSE_RESPONSE)
        turns.append(text[turn_start : start.start()])
        turn_start = position = _ROLE_END.match(text, end).end()
    turns.append(text[turn_start:])
    return turns


def final_answer(turns: list[str]) -> str | None:
    """Content of the last closed ``<answer>...</answer>`` the assistant wrote (stripped).

    None when there is none, or when it is longer than :data:`MAX_ANSWER_CHARS`.
    """
    for turn in reversed(turns):
        last_close = turn.rfind(_CLOSE_ANSWER)
        opening = turn.rfind(_OPEN_ANSWER, 0, max(last_close, 0))
        if last_close < 0 or opening < 0:
            continue
        start = opening + len(_OPEN_ANSWER)
        answer = turn[start : turn.find(_CLOSE_ANSWER, start)].strip()
        return answer if len(answer) <= MAX_ANSWER_CHARS else None
    return None
