"""The paper's <box> protocol as a veRL tool parser, on the tiny tokenizer; and its registration via `import verl`."""

from __future__ import annotations

import asyncio
import json

import pytest

from verl_ext.testing.tiny_qwen import build_tokenizer
from verl_ext.tools.box_parser import BoxToolParser


@pytest.fixture(scope="module")
def parser() -> BoxToolParser:
    return BoxToolParser(build_tokenizer())


def parse(parser: BoxToolParser, text: str):
    ids = parser.tokenizer.encode(text, add_special_tokens=False) + [
        parser.tokenizer.convert_tokens_to_ids("<|im_end|>")
    ]
    content, calls = asyncio.run(parser.extract_tool_calls(ids))
    return content, [(c.name, json.loads(c.arguments)) for c in calls]


def test_box_becomes_a_zoom_call(parser):
    content, calls = parse(parser, "<think>the sign</think> <box>[10, 20.5, 110, 220]</box>")
    assert calls == [("image_zoom_in_tool", {"bbox_2d": [10, 20.5, 110, 220]})]
    assert content == "<think>the sign</think>"


def test_every_box_outside_think_is_a_call(parser):
    _, calls = parse(parser, "<think>maybe <box>[0, 0, 1, 1]</box></think> <box>[1,2,3,4]</box> <box>[5,6,7,8]</box>")
    assert [args["bbox_2d"] for _, args in calls] == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_answer_ends_the_turn(parser):
    assert parse(parser, "<think>x</think> <box>[1, 2, 3, 4]</box> <answer>B</answer>")[1] == []
    assert parse(parser, "<think>x</think> <answer>B</answer>")[1] == []


@pytest.mark.parametrize(
    "box, bbox_2d",
    [
        ("[1, 2, 3]", [1, 2, 3]),
        ("[[1, 2], [3, 4]]", [[1, 2], [3, 4]]),
        ('"1, 2, 3, 4"', "1, 2, 3, 4"),
        ("the red sign", "the red sign"),
        ("(1,2),(3,4)", "(1,2),(3,4)"),
        ("", ""),
    ],
)
def test_malformed_box_is_passed_on_for_the_tool_to_refuse(parser, box, bbox_2d):
    assert parse(parser, f"<think>x</think> <box>{box}</box>")[1] == [("image_zoom_in_tool", {"bbox_2d": bbox_2d})]


def test_non_finite_numbers_survive_the_json_round_trip(parser):
    ((_, args),) = parse(parser, "<box>[NaN, 1, Infinity, 4]</box>")[1]
    assert args["bbox_2d"][0] != args["bbox_2d"][0] and args["bbox_2d"][2] == float("inf")


def test_box_left_open_at_the_end_of_the_turn_is_a_call(parser):
    assert parse(parser, "<think>x</think> <box>[1, 2, 3")[1] == [("image_zoom_in_tool", {"bbox_2d": "[1, 2, 3"})]
