"""The paper's zoom protocol as a veRL tool parser: ``<think>...</think> <box>[x1,y1,x2,y2]</box>``.

Registered with ``ToolParser.register`` as ``ground_r1_box``; select it with
``actor_rollout_ref.rollout.multi_turn.format=ground_r1_box``. Each ``<box>`` becomes a call to
``image_zoom_in_tool`` with ``{"bbox_2d": ...}``, so both syntaxes (this one and hermes
``<tool_call>``) reach the same tool.

Malformed boxes are not dropped: the call still goes to the tool, which answers with an error text
and records the call invalid. The box content is passed as parsed JSON when it parses (a list of the
wrong length, nested lists, strings inside, NaN...), otherwise as the raw string; a ``<box>`` left
open at the end of the turn counts as a box too. The parser never raises: content longer than
``MAX_BOX_CHARS`` (no box needs more) is passed on unparsed, so deep brackets cannot exhaust ``json``'s
recursion, and a ``RecursionError`` inside that bound is treated as "does not parse".
Boxes inside ``<think>`` are reasoning, not calls, and a turn that gives an ``<answer>`` is final: its boxes
are not executed.
"""

from __future__ import annotations

import json
from typing import Any

import regex
from verl.experimental.agent_loop.tool_parser import FunctionCall, ToolParser
from verl.tools.schemas import OpenAIFunctionToolSchema
from verl.utils.ray_utils import get_event_loop

from verl_ext.tools import TOOL_NAME

PARSER_NAME = "ground_r1_box"
#: Longest ``<box>`` content parsed as JSON; longer content goes to the tool as (truncated) text.
MAX_BOX_CHARS = 512

_THINK = regex.compile(r"<think>.*?(?:</think>|$)", regex.DOTALL)
_BOX = regex.compile(r"<box>(.*?)(?:</box>|$)", regex.DOTALL)
_ANSWER = "<answer>"


def box_arguments(content: str) -> dict[str, Any]:
    """``{"bbox_2d": ...}`` for the text inside one ``<box>``: its JSON value if it parses, else the raw text."""
    text = content.strip()
    if len(text) > MAX_BOX_CHARS:
        return {"bbox_2d": text[:MAX_BOX_CHARS]}
    try:
        value: Any = json.loads(text)
    except (ValueError, RecursionError):
        value = text
    return {"bbox_2d": value}


def extract_box_calls(text: str) -> tuple[str, list[FunctionCall]]:
    """Content without the boxes, and one zoom call per ``<box>`` outside ``<think>`` (none if answered)."""
    visible = _THINK.sub("", text)
    if _ANSWER in visible:
        return text, []
    calls = [
        FunctionCall(name=TOOL_NAME, arguments=json.dumps(box_arguments(match), ensure_ascii=False))
        for match in _BOX.findall(visible)
    ]
    if not calls:
        return text, []
    return _BOX.sub("", text).rstrip(), calls


@ToolParser.register(PARSER_NAME)
class BoxToolParser(ToolParser):
    """``<box>[x1, y1, x2, y2]</box>`` -> a call to ``image_zoom_in_tool``."""

    async def extract_tool_calls(
        self, responses_ids: list[int], tools: list[OpenAIFunctionToolSchema] | None = None
    ) -> tuple[str, list[FunctionCall]]:
        loop = get_event_loop()
        text = await loop.run_in_executor(None, lambda: self.tokenizer.decode(responses_ids, skip_special_tokens=True))
        return extract_box_calls(text)
