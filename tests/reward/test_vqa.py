"""VQA correctness on realistic answers: one table per answer type, plus type inference and several truths."""

from __future__ import annotations

import numpy as np
import pytest

from verl_ext.answers import answer_type
from verl_ext.reward.base import IOU_NOT_APPLICABLE, RewardOptions
from verl_ext.reward.vqa import score_open, score_vqa

OPTIONS = ["red", "blue", "light green", "yellow"]
DEFAULTS = RewardOptions()


def vqa(answer, truth, **extra):
    return score_vqa(answer, truth, extra, DEFAULTS)


MULTIPLE_CHOICE = [
    ("B", "B", 1.0),
    ("(B)", "B", 1.0),
    ("B.", "B", 1.0),
    (" b ", "B", 1.0),
    ("Option B", "B", 1.0),
    ("The answer is (B).", "B", 1.0),
    ("B. blue", "B", 1.0),
    ("(B) blue", "B", 1.0),
    ("blue", "B", 1.0),
    ("Blue.", "B", 1.0),
    ("It is light green.", "C", 1.0),
    ("C", "B", 0.0),
    ("A or B", "B", 0.0),
    ("A, B", "B", 0.0),
    ("E", "E", 0.0),  # outside the four options
    ("green", "C", 0.0),  # not an option's text
    ("red or blue", "B", 0.0),  # names two options
    ("", "B", 0.0),
    ("B", "(B)", 1.0),  # ground truth written with parentheses
    ("**B**", "B", 1.0),  # markdown emphasis
    ("\uff22", "B", 1.0),  # full-width B
    ("\uff08B\uff09", "B", 1.0),  # full-width parentheses
    ("B\u200b", "B", 1.0),  # zero-width space
    ("\u200fB", "B", 1.0),  # right-to-left mark
    ("\u2066(B)\u2069", "B", 1.0),  # bidi isolates
    ("I think the answer is B because the red one is gone.", "B", 1.0),  # a stated letter decides...
    ("I think the answer is A because blue is not visible", "B", 0.0),  # ...over the option text it mentions
    ("Answer: (b), light green", "B", 1.0),
    ("B because it is blue", "B", 0.0),  # a bare letter, no statement: neither it nor the text decides
]


def test_a_letter_followed_by_its_text_wins_over_a_shorter_option_it_contains():
    options = ["red bus", "blue car", "car", "train"]
    assert vqa("The answer is (B) the blue car", "B", options=options).acc == 1.0
    assert vqa("the blue car", "B", options=options).acc == 1.0  # "car" is named only inside "blue car"
    assert vqa("a car", "C", options=options).acc == 1.0
    assert vqa("The answer is (C) the blue car", "B", options=options).acc == 0.0


@pytest.mark.parametrize(("answer", "truth", "expected"), MULTIPLE_CHOICE)
def test_multiple_choice(answer, truth, expected):
    result = vqa(answer, truth, options=OPTIONS)
    assert (result.score, result.acc, result.iou) == (expected, expected, IOU_NOT_APPLICABLE)


def test_multiple_choice_options_arrive_as_numpy_and_without_options():
    assert vqa("blue", "B", options=np.array(OPTIONS, dtype=object)).acc == 1.0
    assert vqa("(B)", "B").acc == 1.0  # hr_bench rows may omit the options: letters still count
    assert vqa("blue", "B").acc == 0.0  # ...but option text cannot be resolved without them


YES_NO = [
    ("Yes", "yes", 1.0),
    ("yes.", "Yes", 1.0),
    ("YES, it is on the left.", "yes", 1.0),
    ("No", "no", 1.0),
    ("I think no", "no", 1.0),
    ("no", "yes", 0.0),
    ("Maybe", "yes", 0.0),
]


@pytest.mark.parametrize(("answer", "truth", "expected"), YES_NO)
def test_yes_no(answer, truth, expected):
    assert vqa(answer, truth).acc == expected


NUMBERS = [
    ("3", "3", 1.0),
    ("3.0", "3", 1.0),
    ("three", "3", 1.0),
    ("There are three cars.", "3", 1.0),
    ("3", "three", 1.0),
    ("twenty-one", "21", 1.0),
    ("1,024", "1024", 1.0),
    ("50%", "50", 1.0),
    ("4", "3", 0.0),
    ("3 or 4", "3", 0.0),
    ("several", "3", 0.0),
    ("The one on the left has 3 wheels", "3", 1.0),  # "one" is a pronoun here
    ("\u22123", "-3", 1.0),  # U+2212 MINUS SIGN
    ("\uff13", "3", 1.0),  # full-width digit
    ("one hundred", "100", 1.0),
    ("two thousand and five", "2005", 1.0),
    ("1e3", "1000", 1.0),
    ("1e5", "1e5", 1.0),  # data prep labels "1e5" a number: the reward must read it as one too
    ("100000", "1e5", 1.0),
    ("one two", "1", 0.0),
]


@pytest.mark.parametrize(("answer", "truth", "expected"), NUMBERS)
def test_numbers(answer, truth, expected):
    assert vqa(answer, truth).acc == expected


MATH = [
    (r"\frac{1}{2}", r"$\frac{1}{2}$", 1.0),
    ("0.5", r"$\frac{1}{2}$", 1.0),
    (r"\boxed{\frac{6}{8}}", r"$\frac{3}{4}$", 1.0),
    ("1+x^2", r"$x^2+1$", 1.0),
    (r"\sqrt{2}", r"$\sqrt{2}$", 1.0),
    ("2", r"$\sqrt{2}$", 0.0),
    ("x^2-1", r"$x^2+1$", 0.0),
]


@pytest.mark.parametrize(("answer", "truth", "expected"), MATH)
def test_math(answer, truth, expected):
    assert vqa(answer, truth).acc == expected


def test_open_answers_get_exact_match_or_a_rouge_soft_score():
    assert vqa("The Eiffel Tower", "eiffel tower") == (1.0, 1.0, IOU_NOT_APPLICABLE)
    close = vqa("a red double-decker bus", "red bus")
    far = vqa("a cat sleeping", "red bus")
    assert close.acc == 0.0 and 0.0 < close.score < 1.0
    assert far == (0.0, 0.0, IOU_NOT_APPLICABLE)
    # rouge-score tokens: "a red double decker bus" (5) vs "red bus" (2). R1: P 2/5, R 1 -> F 4/7;
    # R2: the bigram "red bus" is absent -> 0; RL: LCS "red bus" -> 4/7. Mean of the three F1s:
    assert close.score == pytest.approx((4 / 7 + 0.0 + 4 / 7) / 3)
    assert score_open("", "red bus").score == 0.0


def test_declared_answer_type_wins_over_inference():
    # "3" looks like a number, but data prep says it is an open answer: exact match only.
    assert vqa("three", "3", answer_type="open").acc == 0.0
    assert vqa("three", "3").acc == 1.0
    # A junk declared type falls back to inference.
    assert vqa("three", "3", answer_type="essay").acc == 1.0
    assert vqa("three", "3", answer_type=np.array([], dtype=object)).acc == 1.0  # junk row data, not a raise


@pytest.mark.parametrize(
    ("truth", "options", "kind"),
    [
        ("B", None, "multiple_choice"),
        ("(C)", None, "multiple_choice"),
        ("red", OPTIONS, "multiple_choice"),
        ("Yes", None, "yes_no"),
        ("12", None, "number"),
        ("twelve", None, "number"),
        ("1e5", None, "number"),
        ("one hundred", None, "number"),
        (r"$\frac{1}{2}$", None, "math"),
        ("x^2", None, "math"),
        ("the red bus", None, "open"),
    ],
)
def test_answer_type_inference(truth, options, kind):
    assert answer_type(truth, options) == kind


def test_several_accepted_answers_take_the_best():
    assert vqa("bus", ["car", "bus"]).acc == 1.0
    assert vqa("bus", np.array(["car", "bus"], dtype=object)).acc == 1.0
    assert vqa("3", [3, "three"]).acc == 1.0


def test_missing_answer_or_unusable_truth_scores_zero():
    assert vqa(None, "B") == (0.0, 0.0, IOU_NOT_APPLICABLE)
    assert vqa("B", None).score == 0.0
    assert vqa("B", {"answer": "B"}).score == 0.0
