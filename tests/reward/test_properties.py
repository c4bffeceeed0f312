"""Property tests: hostile responses and extra_info never raise, keys and ranges hold, IoU is a proper IoU."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_ext import data_sources
from verl_ext.answers import ANSWER_TYPES, answer_type, is_number, parse_number, parse_yes_no, read_choice
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.geometry import area, iou
from verl_ext.reward import REWARD_KEYS, compute_score
from verl_ext.reward.base import IOU_NOT_APPLICABLE
from verl_ext.reward.grounding import parse_box

GROUNDING = set(data_sources.GROUNDING)
VQA = [data_sources.HR_BENCH_4K, data_sources.HR_BENCH_8K, data_sources.VSTAR, data_sources.VISUAL_COT]
SOURCES = sorted(GROUNDING) + VQA + [data_sources.deepeyes("thinklite")]
PIECES = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<box>",
    "</box>",
    "<tool_call>",
    "</tool_call>",
    "\nuser\n<tool_response>\n",
    "\n</tool_response>\nassistant\n",
    "<|im_end|>",
    "<|im_start|>",
    '{"bbox_2d": [',
    "[1, 2, 300, 400]",
    "(10,20),(30,40)",
    "]",
    ",",
    "B",
    "(C)",
    "yes",
    "three",
    "3.5",
    r"\frac{1}{2}",
    "$",
    "^",
    "nan",
    "-1e9",
    "9" * 40,
    " ",
    "\n",
    "Option A",
    '{"name": "z", "arguments": {}}',
]
responses = st.one_of(
    st.text(max_size=300), st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=30).map("".join)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
record = st.one_of(
    scalars,
    st.fixed_dictionaries({"valid": st.one_of(st.booleans(), scalars), "relative_area": scalars}),
)
extra_infos = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(
        st.sampled_from(
            [
                "image_width",
                "image_height",
                "resized_width",
                "resized_height",
                "min_pixels",
                "max_pixels",
                "options",
                "answer_type",
                ZOOM_RECORDS_KEY,
                "num_turns",
            ]
        ),
        st.one_of(
            scalars,
            st.lists(st.one_of(st.text(max_size=6), record), max_size=5),
            st.lists(record, max_size=5).map(lambda rs: np.array(rs + [None], dtype=object)[:-1]),
            st.sampled_from(["multiple_choice", "yes_no", "number", "math", "open"]),
        ),
        max_size=10,
    ),
)
truths = st.one_of(
    scalars,
    st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-5000, 5000)), min_size=4, max_size=4),
    st.lists(st.text(max_size=8), max_size=3),
    st.sampled_from(["A", "B", "yes", "3", r"$\frac{1}{2}$", "red bus"]),
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(source=st.sampled_from(SOURCES), text=responses, truth=truths, info=extra_infos)
def test_never_raises_and_keeps_keys_and_ranges(source, text, truth, info):
    result = compute_score(source, text, truth, info, math_timeout=1.0)
    assert tuple(result) == REWARD_KEYS
    assert all(type(v) is float and math.isfinite(v) for v in result.values())
    assert result["format"] in (0.0, 1.0) and result["acc"] in (0.0, 1.0)
    assert 0.0 <= result["score"] <= 1.0  # default weights 0.9 + 0.1
    assert 0.0 <= result["evidence_scale"] <= 1.0
    assert result["num_zooms"] >= 0 and result["num_zooms"] == int(result["num_zooms"])
    if source in GROUNDING:
        assert 0.0 <= result["iou"] <= 1.0
        assert result["acc"] == float(result["iou"] >= 0.5)
    else:
        assert result["iou"] == IOU_NOT_APPLICABLE


@FAST
@given(text=st.text(max_size=200))
def test_non_string_and_arbitrary_responses(text):
    for solution in (text, None, 42, text.encode()):
        assert tuple(compute_score("vstar", solution, "B", {"options": ["a", "b"]})) == REWARD_KEYS


coords = st.floats(-1e4, 1e4, allow_nan=False)
boxes = st.tuples(coords, coords, coords, coords)


@settings(max_examples=300, deadline=None)
@given(a=boxes, b=boxes)
def test_iou_symmetric_bounded_and_one_on_itself(a, b):
    assert iou(a, b) == iou(b, a)
    assert 0.0 <= iou(a, b) <= 1.0
    if area(a) > 0:  # a box whose area underflows to 0 (sides of 1e-200) overlaps nothing, itself included
        assert iou(a, a) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    box=st.tuples(*[st.integers(0, 2000)] * 4),
    template=st.sampled_from(
        ['{{"bbox_2d": [{}, {}, {}, {}]}}', "[{}, {}, {}, {}]", "({},{}),({},{})", "Box: [ {} ,{},{} , {} ]."]
    ),
)
def test_every_written_shape_parses_back(box, template):
    assert parse_box(template.format(*box)) == tuple(float(v) for v in box)


grammar_pieces = st.sampled_from(
    ["one", "hundred", "thousand", "and", "twenty", "-", " ", "1e", "9" * 30, ".", ",", "the", "(B)", "**", "\u2212"]
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.lists(grammar_pieces | st.text(max_size=3), max_size=25).map("".join)))
def test_the_answer_grammar_never_raises_and_reads_numbers_consistently(text):
    value = parse_number(text)
    assert value is None or math.isfinite(value)
    assert read_choice(text, ["red", "blue car", "car", text]) in (None, "A", "B", "C", "D")
    parse_yes_no(text)
    assert answer_type(text) in ANSWER_TYPES
    if is_number(text):  # what data prep labels a number, the reward reads as that number
        assert value is not None
