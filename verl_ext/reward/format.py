"""Format reward: every assistant turn is ``<think>...</think>`` then exactly one action.

Actions: a zoom call, in either syntax the zoom tool accepts (``<box>[x1, y1, x2, y2]</box>`` or a hermes
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``), in every turn but the last, and the final
``<answer>...</answer>`` in the last turn. The reasoning must not be blank, and each turn holds each tag
once, so a turn cannot smuggle a second call or answer into its reasoning.
"""

from __future__ import annotations

import json
import re

from verl_ext.answers import DECIMAL

_TURN = re.compile(
    r"\s*<think>(?P<think>.*?)</think>\s*"
    r"(?:<answer>(?P<answer>.*?)</answer>|<box>(?P<box>.*?)</box>|<tool_call>(?P<call>.*?)</tool_call>)\s*",
    re.DOTALL,
)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>", "<box>", "</box>", "<tool_call>", "</tool_call>")
_NUMBER = rf"\s*+{DECIMAL}\s*+"
_BOX_ARGS = re.compile(rf"\s*+\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]\s*+")


def format_score(turns: list[str]) -> float:
    """1.0 when every turn is well formed (calls, then one answer last), else 0.0."""
    if not turns:
        return 0.0
    *calls, last = turns
    return float(all(_turn_action(t) == "call" for t in calls) and _turn_action(last) == "answer")


def _turn_action(turn: str) -> str | None:
    """ "call" or "answer" for a well-formed turn, None otherwise."""
    if sum(turn.count(tag) for tag in _TAGS) != 4:  # also keeps the regex below linear
        return None
    match = _TURN.fullmatch(turn)
    if match is None or not match["think"].strip():
        return None
    if match["answer"] is not None:
        return "answer" if match["answer"].strip() else None
    if match["box"] is not None:
        return "call" if _BOX_ARGS.fullmatch(match["box"]) else None
    return "call" if _is_hermes_call(match["call"]) else None


def _is_hermes_call(payload: str) -> bool:
    try:
        call = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)
