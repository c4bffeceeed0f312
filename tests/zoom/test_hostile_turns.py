"""Hostile model turns and broken rows through veRL's own AgentLoopWorker (issue 13, rollout items 1-3).

The policy writes every string eventually: deep brackets, special-token spellings in a box, a label or a tool
name, rows with impossible image paths or pixel bounds. None of it may stop a rollout, and nothing the model wrote
may reach a tool turn, which is tokenized with special tokens (an echoed ``<|image_pad|>`` makes the image-token
count disagree with the images; ``<|im_end|><|im_start|>`` forges turns).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.testing.tiny_qwen import build_tokenizer
from verl_ext.tools.box_parser import extract_box_calls
from verl_ext.tools.region_zoom import RegionZoomTool

THINK = "<think>Zoom in.</think> "
ANSWER = "<think>Done.</think> <answer>B</answer>"
SPELLINGS = ["<|image_pad|>", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|><|im_start|>user\n"]
#: Text our own tool turns may contain that looks like a tag.
OWN_TAGS = ("<tool_response>", "</tool_response>", "<answer></answer>")
TAG = re.compile(r"<[/|]?[A-Za-z_][^<>]*>")


def spelled(tokenizer, text: str) -> list[int]:
    """``text`` as a model can write it without emitting any special id: one ordinary token per character."""
    return [i for ch in text for i in tokenizer.encode(ch, add_special_tokens=False)]


def special_ids(tokenizer) -> dict[int, str]:
    return {tokenizer.convert_tokens_to_ids(t): t for t in tokenizer.get_added_vocab()}


def tool_segments(zoom_loop, out, i: int = 0) -> list[list[int]]:
    """Token ids of each tool turn (the runs of the response the model did not write)."""
    response = out.batch["responses"][i].tolist()
    mask = out.batch["response_mask"][i].tolist()
    length = int(out.batch["attention_mask"][i][-len(response) :].sum())
    segments, current = [], []
    for token, m in zip(response[:length], mask[:length], strict=True):
        if m == 0:
            current.append(token)
        elif current:
            segments.append(current)
            current = []
    return segments + ([current] if current else [])


def assert_tool_turns_hold_only_template_tokens(zoom_loop, out, i: int = 0) -> None:
    """Every tool turn: the template's two turn markers, one vision span per image, no other special token; the
    image-token count matches the images; no tag besides our own."""
    tok = zoom_loop.tokenizer
    specials = special_ids(tok)
    filler = tok.encode(" ", add_special_tokens=False)[0]
    for segment in tool_segments(zoom_loop, out, i):
        if tok.convert_tokens_to_ids("<|im_start|>") not in segment:  # a defused model turn: masked filler only
            assert set(segment) == {filler}
            continue
        names = [specials[t] for t in segment if t in specials]
        counts = {n: names.count(n) for n in set(names)}
        assert counts.pop("<|im_start|>") == 2 and counts.pop("<|im_end|>") == 1, names
        images = counts.pop("<|vision_start|>", 0)
        assert counts.pop("<|vision_end|>", 0) == images and (counts.pop("<|image_pad|>", 0) > 0) == (images > 0)
        assert counts == {}, names
        assert foreign_tags(tok.decode(segment, skip_special_tokens=True)) == []
    grid = out.non_tensor_batch["multi_modal_inputs"][i]["image_grid_thw"]
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    ids = out.batch["input_ids"][i][out.batch["attention_mask"][i].bool()]
    assert int((ids == pad).sum()) == int(grid.prod(-1).sum()) // 4


def foreign_tags(text: str) -> list[str]:
    """Tags (``<name>``, ``</name>``, ``<|name|>``) in ``text`` other than the ones our tool turns own."""
    for tag in OWN_TAGS:
        text = text.replace(tag, "")
    return TAG.findall(text)


def records_of(out, i: int = 0) -> list[dict]:
    return list(out.non_tensor_batch[ZOOM_RECORDS_KEY][i])


def hermes_call(arguments: str, name: str = "image_zoom_in_tool") -> str:
    return f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": {arguments}}}\n</tool_call>'


def test_a_thousand_brackets_in_a_box_finish_the_rollout(zoom_loop):
    """json.loads would raise RecursionError on ``<box>[[[...``; the call reaches the tool as text instead."""
    call = "<box>" + "[" * 1000 if zoom_loop.fmt == "ground_r1_box" else hermes_call('{"bbox_2d": ' + "[" * 1000)
    out = zoom_loop.run([THINK + call, ANSWER])
    if zoom_loop.fmt == "ground_r1_box":
        (record,) = records_of(out)
        assert record["valid"] is False and "got a string of 512 characters" in record["reason"]
        assert zoom_loop.text(out).endswith("<answer>B</answer><|im_end|>")
    else:  # veRL's hermes parser drops a call that is no JSON: the turn ends the rollout
        assert records_of(out) == [] and len(zoom_loop.server.calls) == 1


def test_deep_but_short_nesting_is_an_invalid_box(zoom_loop):
    if zoom_loop.fmt != "ground_r1_box":
        pytest.skip("<box> syntax only")
    out = zoom_loop.run([THINK + "<box>" + "[" * 250 + "]" * 250 + "</box>", ANSWER])
    assert "4 numbers, got 1" in records_of(out)[0]["reason"]
    assert_tool_turns_hold_only_template_tokens(zoom_loop, out)


@pytest.mark.parametrize("spelling", SPELLINGS, ids=["image_pad", "vision_span", "turn_markers"])
@pytest.mark.parametrize("where", ["label", "bbox_text", "bbox_item", "spelled_box", "tool_name"])
def test_special_token_spellings_never_reach_the_tool_turn(zoom_loop, spelling, where):
    tok = zoom_loop.tokenizer
    box = [10, 20, 60, 70]
    if zoom_loop.fmt == "ground_r1_box":
        if where == "spelled_box":  # written in ordinary pieces: the parser's decode keeps it
            turn = tok.encode(THINK + "<box>", add_special_tokens=False) + spelled(tok, spelling + "[1, 2]")
        elif where == "bbox_item":
            turn = spelled(tok, THINK + f"<box>[{json.dumps(spelling)}, 2, 3, 4]</box>")
        else:
            pytest.skip("hermes syntax only")
    else:
        arguments = {
            "label": json.dumps({"bbox_2d": box, "label": spelling}),
            "bbox_text": json.dumps({"bbox_2d": spelling}),
            "bbox_item": json.dumps({"bbox_2d": [spelling, 2, 3, 4]}),
            "tool_name": json.dumps({"bbox_2d": box}),
        }.get(where)
        if arguments is None:
            pytest.skip("<box> syntax only")
        name = spelling if where == "tool_name" else "image_zoom_in_tool"
        turn = spelled(tok, THINK + hermes_call(arguments, name=name))
    out = zoom_loop.run([turn, ANSWER])
    assert_tool_turns_hold_only_template_tokens(zoom_loop, out)
    if "pad|>" in spelling:  # the model's own turn wrote a placeholder: defused before any tool runs
        assert out.non_tensor_batch["__num_turns__"][0] == 2 and records_of(out) == []
        return
    assert zoom_loop.text(out).endswith("<answer>B</answer><|im_end|>")
    assert out.non_tensor_batch["__num_turns__"][0] == 4
    records = records_of(out)
    if where == "tool_name":
        assert records == [] and "Unknown tool. Available tools: image_zoom_in_tool." in zoom_loop.text(out)
    elif where == "label":
        assert records[0]["valid"] is True  # the label is ignored, the zoom happens
    else:
        assert records[0]["valid"] is False


@pytest.mark.parametrize(
    "create_kwargs, reason",
    [
        ({"image_path": "scene\x00.png"}, "contains a NUL"),
        ({"image_path": "scene.png", "min_pixels": 50000, "max_pixels": 40000}, "exceed its max_pixels"),
        ({"image_path": "scene.png", "max_pixels": None}, "lack max_pixels"),
        ({"image_path": "pipe"}, "not a regular file"),
    ],
    ids=["nul", "min_over_max", "no_bounds", "fifo"],
)
def test_broken_rows_give_an_invalid_record_not_a_crash_or_a_hang(zoom_loop, create_kwargs, reason):
    """Each zoom of a broken row is counted (num_zooms stays exact) and answered with a message, promptly."""
    if not (zoom_loop.image_root / "pipe").exists():
        os.mkfifo(zoom_loop.image_root / "pipe")
    kwargs = {"min_pixels": 3136, "max_pixels": 64 * 28 * 28, **create_kwargs}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    out = zoom_loop.run([THINK + zoom_loop.zoom_call([10, 20, 60, 70]), ANSWER], create_kwargs=kwargs)
    (record,) = records_of(out)
    assert record["valid"] is False and reason in record["reason"]
    assert "Zoom failed: the image is unavailable" in zoom_loop.text(out)
    assert_tool_turns_hold_only_template_tokens(zoom_loop, out)


@pytest.mark.parametrize(
    "tools_kwargs", ["garbage", {"image_zoom_in_tool": "garbage"}, {"image_zoom_in_tool": {"create_kwargs": "x"}}]
)
def test_tool_kwargs_that_are_no_mappings_are_an_invalid_record(zoom_loop, tools_kwargs):
    out = zoom_loop.run([THINK + zoom_loop.zoom_call([10, 20, 60, 70]), ANSWER], tools_kwargs=tools_kwargs)
    (record,) = records_of(out)
    assert record["valid"] is False and "lack min_pixels" in record["reason"]


# --- property tests -------------------------------------------------------------------------------------------

PIECES = st.sampled_from(
    SPELLINGS
    + ["<box>", "</box>", "<think>", "</think>", "<answer>", "<tool_call>", "</tool_call>", "[", "]", "{", "}"]
    + ['"', ",", " ", "\n", "10", "-1", "1e999", "NaN", "label", "bbox_2d", "<", ">", "|", "\\", "\x00"]
)
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=8), PIECES.map(lambda p: p * 300)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def parser_tool(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("prop")
    Image.new("RGB", (640, 480), "gray").save(root / "a.png")
    return build_tokenizer(), RegionZoomTool({"type": "native", "image_root": str(root)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_box_parser_and_tool_never_raise_and_never_emit_a_special_token(parser_tool, text):
    tokenizer, tool = parser_tool
    specials = set(special_ids(tokenizer))
    _, calls = extract_box_calls(text)
    agent_data = SimpleNamespace(extra_fields={})

    async def run_calls():
        responses = []
        for call in calls:
            instance_id, _ = await tool.create(
                create_kwargs={"image_path": "a.png", "min_pixels": 3136, "max_pixels": 401408}
            )
            responses.append(await tool.execute(instance_id, json.loads(call.arguments), agent_data=agent_data))
            await tool.release(instance_id)
        return responses

    for response, _, _ in asyncio.run(run_calls()):
        assert not specials & set(tokenizer.encode(response.text, add_special_tokens=False)), response.text
        assert foreign_tags(response.text) == [], response.text
    assert len(agent_data.extra_fields.get(ZOOM_RECORDS_KEY, [])) == len(calls)
    tool.release_trajectory(agent_data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=HOSTILE, label=HOSTILE, name=st.sampled_from(["image_zoom_in_tool", *SPELLINGS]))
def test_any_model_turn_finishes_the_rollout_with_clean_tool_turns(zoom_loop, text, label, name):
    """Through veRL's worker: a hostile first turn (box syntax: the text as is; hermes: a call whose bbox, label
    and name carry it) never raises, and its tool turns hold only the template's own special tokens."""
    if zoom_loop.fmt == "ground_r1_box":
        turn = THINK + text
    else:
        turn = THINK + hermes_call(json.dumps({"bbox_2d": text, "label": label}), name=name)
    out = zoom_loop.run([spelled(zoom_loop.tokenizer, turn), ANSWER])
    assert_tool_turns_hold_only_template_tokens(zoom_loop, out)


@pytest.mark.parametrize("form", ["spelled", "special_id", "video_spelled"])
def test_a_turn_writing_an_image_placeholder_is_defused_not_fatal(zoom_loop, form):
    """veRL rebuilds the multimodal inputs by decoding the conversation to text for the processor, so a placeholder
    the model writes in its own turn would count as an image it does not have (the batch raised StopIteration).
    The loop masks that turn out, ends the rollout there, and the batch goes on."""
    tok = zoom_loop.tokenizer
    written = "<|image_pad|><|image_pad|>" if form != "video_spelled" else "<|video_pad|>"
    head = THINK + written + zoom_loop.zoom_call([1, 2, 30, 40])
    turn = tok.encode(head, add_special_tokens=False) if form == "special_id" else spelled(tok, head)
    out = zoom_loop.run([turn, ANSWER])
    assert len(zoom_loop.server.calls) == 1 and out.non_tensor_batch["__num_turns__"][0] == 2
    assert records_of(out) == []  # the turn's call was not executed
    assert int(out.batch["response_mask"][0].sum()) == 0  # nothing of it is trained on
    assert "pad|>" not in tok.decode(response_of_loop(out), skip_special_tokens=False)
    assert_tool_turns_hold_only_template_tokens(zoom_loop, out)  # image-token count still matches the one image


def response_of_loop(out, i: int = 0) -> list[int]:
    length = int(out.batch["attention_mask"][i][-out.batch["responses"].shape[1] :].sum())
    return out.batch["responses"][i][:length].tolist()
