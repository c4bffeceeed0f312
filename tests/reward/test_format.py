"""Turn splitting, the final answer and the format reward on realistic multi-turn responses."""

from __future__ import annotations

import pytest

from verl_ext.reward.format import format_score
from verl_ext.reward.text import assistant_turns, final_answer

THINK = "<think>The sign is too small to read; zoom in on it.</think>\n"
BOX_CALL = THINK + "<box>[120, 40, 260, 180]</box>"
HERMES_CALL = (
    THINK + '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [120, 40, 260, 180]}}\n</tool_call>'
)
ANSWER = "<think>The crop shows a blue sign.</think>\n<answer>B</answer>"

FORMAT_CASES = [
    ("answer only", [ANSWER], 1.0),
    ("box zoom then answer", [BOX_CALL, ANSWER], 1.0),
    ("hermes zoom then answer", [HERMES_CALL, ANSWER], 1.0),
    ("two zooms, mixed syntaxes", [BOX_CALL, HERMES_CALL, ANSWER], 1.0),
    ("sloppy spacing", ["  <think>\nlook closer\n</think>   <box>[ 1 ,2, 30.5 ,40 ]</box>  ", ANSWER], 1.0),
    ("think missing", ["<answer>B</answer>"], 0.0),
    ("think blank", ["<think>  </think><answer>B</answer>"], 0.0),
    ("think not closed", ["<think>blue<answer>B</answer>"], 0.0),
    ("answer missing", ["<think>It is blue.</think> B"], 0.0),
    ("answer blank", ["<think>It is blue.</think><answer> </answer>"], 0.0),
    ("two answers", ["<think>It is blue.</think><answer>B</answer><answer>C</answer>"], 0.0),
    ("text after answer", [ANSWER + " I hope this helps."], 0.0),
    ("text before think", ["Sure! " + ANSWER], 0.0),
    ("answer hidden in think", ["<think>maybe <answer>C</answer></think><answer>B</answer>"], 0.0),
    ("two calls in one turn", [BOX_CALL + "<box>[1, 2, 3, 4]</box>", ANSWER], 0.0),
    ("box not four numbers", [THINK + "<box>[1, 2, 3]</box>", ANSWER], 0.0),
    ("box with words", [THINK + "<box>the sign</box>", ANSWER], 0.0),
    ("hermes call not json", [THINK + "<tool_call>zoom(1, 2, 3, 4)</tool_call>", ANSWER], 0.0),
    ("hermes call without arguments", [THINK + '<tool_call>{"name": "image_zoom_in_tool"}</tool_call>', ANSWER], 0.0),
    ("ends on a zoom (turn limit)", [ANSWER.replace("<answer>B</answer>", "<box>[1, 2, 30, 40]</box>")], 0.0),
    ("answer before the last turn", [ANSWER, ANSWER], 0.0),
    ("empty response", [""], 0.0),
]


@pytest.mark.parametrize("skip_special_tokens", [True, False], ids=["special-skipped", "special-kept"])
@pytest.mark.parametrize(("case", "turns", "expected"), FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_format_table(render, case, turns, expected, skip_special_tokens):
    text = render(*turns, skip_special_tokens=skip_special_tokens)
    assert format_score(assistant_turns(text)) == expected


@pytest.mark.parametrize("skip_special_tokens", [True, False], ids=["special-skipped", "special-kept"])
def test_turns_are_the_assistant_turns(render, skip_special_tokens):
    text = render(BOX_CALL, HERMES_CALL, ANSWER, skip_special_tokens=skip_special_tokens)
    turns = assistant_turns(text)
    assert [t.strip() for t in turns] == [BOX_CALL, HERMES_CALL, ANSWER]
    assert "Zoomed in" not in "".join(turns)


def test_final_answer_is_the_last_answer_of_the_assistant():
    turns = assistant_turns(
        "<think>a</think><answer> A </answer>\nuser\n<tool_response>\n<answer>D</answer>\n</tool_response>\n"
        "assistant\n<think>b</think><answer>\n(C)\n</answer> and <answer>B</answer>"
    )
    assert final_answer(turns) == "B"
    assert final_answer(assistant_turns("<think>no answer</think> B")) is None
    assert final_answer(assistant_turns("<answer>B")) is None


def test_tool_response_without_role_words_is_not_a_turn_boundary():
    """Only a tool response the chat template framed as a user turn splits turns; a model's own tag does not."""
    text = BOX_CALL + "<tool_response>fake</tool_response>" + ANSWER
    assert len(assistant_turns(text)) == 1
    assert format_score(assistant_turns(text)) == 0.0
