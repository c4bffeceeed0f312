"""Hostile responses through compute_score: huge adversarial texts give the right outcome, and row data never raises.

Every pattern the reward runs is linear (the benchmark benchmarks/bench_reward_adversarial.py measures the
time); these tests check what those inputs score.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_ext.answers import answer_type, is_number, parse_number
from verl_ext.reward import REWARD_KEYS, compute_score
from verl_ext.reward.text import MAX_ANSWER_CHARS, MAX_RESPONSE_CHARS

K = 100_000
GOOD = "<think>It is blue.</think><answer>B</answer>"
MC = {"options": ["red", "blue"]}
HOSTILE_PREFIXES = {
    "unclosed answers": "<answer>" * (K // 8),
    "tool turn openings": "user<tool_response>" * (K // 19),
    "a word then spaces": "answer" + " " * K,
    "corner pair then spaces": "(1,2)" + " " * K,
    "digits": "[" + "1" * K,
    "special-token spellings": "<|im_start|" * (K // 11),
}


@pytest.mark.parametrize("prefix", HOSTILE_PREFIXES.values(), ids=HOSTILE_PREFIXES.keys())
def test_a_correct_answer_after_100_kb_of_hostile_text_still_counts(prefix):
    result = compute_score("vstar", prefix + GOOD, "B", MC)
    assert tuple(result) == REWARD_KEYS
    assert result["acc"] == 1.0


@pytest.mark.parametrize("text", HOSTILE_PREFIXES.values(), ids=HOSTILE_PREFIXES.keys())
def test_100_kb_of_hostile_text_alone_scores_zero(text):
    for source, truth, info in [
        ("vstar", "B", MC),
        ("visual_cot", "red bus", {}),
        ("visual_cot", "3", {}),
        ("refcoco", [0, 0, 10, 10], {"image_width": 64, "image_height": 64, "resized_width": 56, "resized_height": 56}),
    ]:
        result = compute_score(source, text, truth, info)
        assert (result["score"], result["acc"]) == (0.0, 0.0)


def test_hostile_text_inside_the_answer_is_scored_as_wrong_not_raised():
    for answer in ["answer" + " " * 4000 + "xy", "(1,2)" + " " * 4000 + "x", "one " * 1000, "1." * 2000]:
        result = compute_score("vstar", f"<think>x</think><answer>{answer}</answer>", "B", MC)
        assert result["acc"] == 0.0 and result["format"] == 1.0


def test_only_the_tail_of_a_long_response_is_read():
    padding = "<think>" + "a" * MAX_RESPONSE_CHARS + "</think>"
    result = compute_score("vstar", padding + GOOD, "B", MC)
    assert result["acc"] == 1.0  # the answer is at the end, inside the tail that is read
    assert result["format"] == 0.0  # the cut first turn is not well formed


def test_an_overlong_answer_is_no_answer():
    long_answer = "B " + "x" * MAX_ANSWER_CHARS
    assert compute_score("visual_cot", f"<answer>{long_answer}</answer>", long_answer)["acc"] == 0.0
    assert compute_score("visual_cot", f"<answer>{long_answer[:100]}</answer>", long_answer[:100])["acc"] == 1.0


def test_the_last_closed_answer_counts():
    text = "<answer>A</answer> then <answer>B</answer> and <answer>C"
    assert compute_score("vstar", text, "B", MC)["acc"] == 1.0


numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.floats(1e-30, 1e30).map(lambda v: f"{v:e}"),
    st.integers(0, 10**9).map(lambda v: f"{v:,}"),
)


@settings(max_examples=200, deadline=None)
@given(text=numbers)
def test_data_prep_and_the_reward_read_numbers_with_one_grammar(text):
    """What data prep labels a number, the reward parses, and the ground truth written back scores 1."""
    assert is_number(text), text
    assert answer_type(text) == "number"
    value = parse_number(text)
    assert value is not None and math.isclose(value, float(text.replace(",", "")), rel_tol=1e-9)
    assert compute_score("visual_cot", f"<answer>{text}</answer>", text)["acc"] == 1.0
