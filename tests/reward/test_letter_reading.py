"""Reading a multiple-choice answer through ``compute_score``: a stated letter decides, option text only without one.

Issue 17: an answer stating its letter in a sentence was read by the option text it mentioned, so a wrong stated
letter next to the right option's text scored right (and a right stated letter next to no text scored wrong).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from verl_ext import data_sources
from verl_ext.answers import read_choice, stated_letters
from verl_ext.reward import compute_score

CARS = ["the white truck", "the blue bus", "the red car", "the bicycle"]
SOURCES = [data_sources.VSTAR, data_sources.HR_BENCH_4K, data_sources.HR_BENCH_8K]


def acc(answer: str, truth: str, options: list[str] | None = CARS, source: str = data_sources.VSTAR) -> float:
    info = {"options": options} if options is not None else {}
    return compute_score(source, f"<think>Looking.</think><answer>{answer}</answer>", truth, info)["acc"]


@pytest.mark.parametrize("source", SOURCES)
def test_the_issues_example_a_stated_wrong_letter_next_to_the_right_options_text_is_wrong(source):
    answer = "I think the answer is B because the red car is not visible"
    assert acc(answer, "C", source=source) == 0.0
    assert acc(answer, "B", source=source) == 1.0


#: (answer, truth): a letter stated in a sentence, with another option's text or none (read wrongly before).
STATED_IN_SENTENCES = [
    ("I think the answer is B because the red car is not visible", "B"),
    ("The answer is B because the bus is blue.", "B"),
    ("Answer: (B), since the red car is parked far away.", "B"),
    ("The correct answer is D: the red car is a bicycle lane marker.", "D"),
    ("I choose option B.", "B"),
    ("**B** because it is blue", "B"),
    ("The answer is (A); the red car is too far.", "A"),
    ("The answer is A because the red car is behind it.", "A"),
    ("Option D, not the red car.", "D"),
]
#: The same answers against the option whose text they mention: stated wrong letters (credited before).
WRONG_LETTER_RIGHT_TEXT = [(answer, "C") for answer, _ in STATED_IN_SENTENCES if "red car" in answer]


@pytest.mark.parametrize(("answer", "truth"), STATED_IN_SENTENCES)
def test_a_letter_stated_in_a_sentence_decides(answer, truth):
    assert acc(answer, truth) == 1.0


@pytest.mark.parametrize(("answer", "truth"), WRONG_LETTER_RIGHT_TEXT)
def test_a_stated_wrong_letter_is_wrong_whatever_option_text_it_mentions(answer, truth):
    assert acc(answer, truth) == 0.0


@pytest.mark.parametrize(
    ("answer", "truth", "options"),
    [
        ("b", "B", CARS),  # a lower-case letter alone is a letter
        ("(c).", "C", CARS),
        ("A bus", "A", ["bus", "car", "train", "boat"]),  # "A" is the article before an option's text...
        ("A bus", "B", ["car", "bus", "train", "boat"]),
        ("The answer is A bus.", "B", ["car", "bus", "train", "boat"]),
        ("A. bus", "A", ["car", "bus", "train", "boat"]),  # ...but "A." is the letter
        ("A", "A", CARS),
        ("the blue car", "B", ["red bus", "blue car", "car", "train"]),  # the longer option wins
        ("a car", "C", ["red bus", "blue car", "car", "train"]),
        ("Vitamin C", "A", ["Vitamin C", "Vitamin D"]),  # a capital letter inside an option's text is text
        ("It is plan B.", "B", ["plan A", "plan B"]),
        ("Answer: I think the red car", "C", CARS),  # "I" is the pronoun: no letter stated, the text decides
    ],
)
def test_what_reads_better_than_exact_matching_is_kept(answer, truth, options):
    assert acc(answer, truth, options) == 1.0


@pytest.mark.parametrize(
    ("answer", "options"),
    [
        ("The answer is B, or maybe option C.", CARS),  # two stated letters
        ("(A) or (B)", CARS),
        ("**A** **B**", CARS),
        ("the red car or the blue bus", CARS),  # two option texts, no letter
        ("car, or the blue car", ["red bus", "blue car", "car", "train"]),  # "car" named on its own too
        ("B because the red car is visible", CARS),  # a bare letter may be meant: the text does not decide
        ("It is C.", CARS),
        ("The answer is E", CARS),  # a stated letter beyond the options
    ],
)
def test_answers_that_choose_no_single_option(answer, options):
    assert read_choice(answer, options) is None
    assert all(acc(answer, chr(ord("A") + k), options) == 0.0 for k in range(len(options)))


def test_a_stated_letter_is_not_undone_by_a_bare_one():
    assert acc("The answer is B, not C.", "B") == 1.0
    assert acc("The answer is B, or maybe C.", "C") == 0.0  # read as B, whichever is right: hedging earns nothing


def test_without_options_only_a_stated_letter_counts():
    assert acc("I think the answer is B because it is blue", "B", options=None) == 1.0
    assert acc("the blue bus", "B", options=None) == 0.0
    assert stated_letters("The answer is A bus") == {"A"}  # no options to say "bus" is one: the letter A


# --- properties -------------------------------------------------------------------------------------------------

LETTERS = "ABCDEF"
#: Statements of a letter that hold anywhere in an answer ({} is the letter).
ANYWHERE = ["the answer is {}.", "The correct answer is ({})", "Answer: {}.", "I choose option {}.", "**{}**", "({})"]
#: Statements that lead the answer.
LEADING = ["{}. ", "{}) ", "({}) "]
#: Pieces of surrounding text: letters, phrases, emphasis, parentheses (never "<", which would cut the answer tag).
NOISE = st.lists(
    st.sampled_from(["answer", "is", "option", "(", ")", "**", ".", ",", "A", "B", "C", "a", "I", "the", " ", "\n"])
    | st.text(st.characters(blacklist_characters="<"), max_size=8),
    max_size=12,
).map(" ".join)
option_lists = st.lists(st.text(st.characters(blacklist_characters="<"), max_size=12), min_size=2, max_size=6)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    options=option_lists,
    data=st.data(),
    template=st.sampled_from(ANYWHERE + LEADING + ["the answer is {} because"]),
    before=NOISE,
    after=NOISE,
    truth_text_at=st.integers(0, 2),
)
def test_no_answer_that_states_a_wrong_letter_is_scored_right(options, data, template, before, after, truth_text_at):
    letters = LETTERS[: len(options)]
    truth = data.draw(st.sampled_from(letters))
    wrong = data.draw(st.sampled_from([c for c in letters if c != truth]))
    assume(not (template.endswith("because") and wrong == "A"))  # "the answer is A <option text>": the article
    truth_text = options[ord(truth) - ord("A")]
    pieces = [before, truth_text] if truth_text_at == 0 else [before]
    statement = template.format(wrong)
    answer = statement + " " + after if template in LEADING else " ".join([*pieces, statement, after])
    if truth_text_at == 1:
        answer += " " + truth_text
    assert wrong in stated_letters(answer, options)
    assert acc(answer, truth, options) == 0.0


#: Option texts that cannot spell a letter statement: lower-case words of two or more letters without a, i, o (and
#: not "the", an article that normalising removes).
WORD = st.text(alphabet="bcdefghjklmnpqrstuvwxyz", min_size=2, max_size=6).filter(lambda w: w != "the")
plain_options = st.lists(st.lists(WORD, min_size=1, max_size=3).map(" ".join), min_size=2, max_size=6, unique=True)


@FAST
@given(options=plain_options, data=st.data(), joiner=st.sampled_from([" or ", ", or ", " and ", " vs "]))
def test_no_answer_listing_two_or_more_option_texts_without_a_letter_is_scored_right(options, data, joiner):
    named = data.draw(st.lists(st.sampled_from(options), min_size=2, max_size=len(options), unique=True))
    answer = joiner.join(named)
    for k in range(len(options)):
        assert acc(answer, chr(ord("A") + k), options) == 0.0


@FAST
@given(options=plain_options, data=st.data(), template=st.sampled_from(ANYWHERE + LEADING))
def test_a_stated_right_letter_is_right_whatever_option_texts_follow(options, data, template):
    truth = data.draw(st.sampled_from(LETTERS[: len(options)]))
    texts = data.draw(st.lists(st.sampled_from(options), max_size=3))
    assert acc(template.format(truth) + " " + " or ".join(texts), truth, options) == 1.0
