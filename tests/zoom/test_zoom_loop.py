"""End to end through veRL's own AgentLoopWorker + ToolAgentLoop on CPU, once per call syntax (hermes, <box>).

The scripted model zooms, the tool crops the full-resolution original, the crop comes back as a new image with
its image tokens, the records land in extra_fields and the loop ends at <answer>. Every kind of bad argument goes
through the same loop: the rollout finishes, the model sees an error text, the call is recorded invalid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from verl.protocol import DataProto

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.tools.region_zoom import RegionZoomTool

THINK = "<think>The sign is too small to read; zoom in.</think> "
ANSWER = "<think>Now it is readable.</think> <answer>B</answer>"
SCENE_W, SCENE_H, SEEN_W, SEEN_H = 1000, 700, 252, 168


def expected_pixel_box(box: list[float]) -> tuple[int, int, int, int]:
    """Where a model-frame box lands in the 1000x700 original (sides are well above 28 px here)."""
    sx, sy = SCENE_W / SEEN_W, SCENE_H / SEEN_H
    return (math.floor(box[0] * sx), math.floor(box[1] * sy), math.ceil(box[2] * sx), math.ceil(box[3] * sy))


def image_pad_count(zoom_loop, out, i: int = 0) -> int:
    pad = zoom_loop.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = out.batch["input_ids"][i][out.batch["attention_mask"][i].bool()]
    return int((ids == pad).sum())


def records_of(out, i: int = 0) -> list[dict]:
    return list(out.non_tensor_batch[ZOOM_RECORDS_KEY][i])


def test_zoom_returns_original_crop_as_new_image_and_ends_at_answer(zoom_loop):
    box = [10, 20, 60, 70]
    out = zoom_loop.run([THINK + zoom_loop.zoom_call(box), ANSWER])
    original = Image.open(zoom_loop.image_root / "scene.png").convert("RGB")
    pixel_box = expected_pixel_box(box)

    # The model was asked twice; the second time it also got the crop, cut from the full-resolution original.
    calls = zoom_loop.server.calls
    assert len(calls) == 2 and len(calls[0]["images"]) == 1 and len(calls[1]["images"]) == 2
    crop = calls[1]["images"][1]
    assert crop.size == (pixel_box[2] - pixel_box[0], pixel_box[3] - pixel_box[1])
    np.testing.assert_array_equal(
        np.asarray(crop), np.asarray(original)[pixel_box[1] : pixel_box[3], pixel_box[0] : pixel_box[2]]
    )

    # The crop is a second image in the multimodal inputs, with exactly as many image tokens as its grid needs.
    mm = out.non_tensor_batch["multi_modal_inputs"][0]
    grid = mm["image_grid_thw"]
    assert grid.shape == (2, 3)
    crop_grid = zoom_loop.processor.image_processor(images=[crop], return_tensors="pt")["image_grid_thw"]
    torch.testing.assert_close(grid[1:], crop_grid)
    assert mm["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    assert image_pad_count(zoom_loop, out) == int(grid.prod(-1).sum()) // 4  # 2x2 patches merge into one token

    # One valid record in extra_fields, in both frames.
    (record,) = records_of(out)
    assert record == {
        "bbox_model": [10.0, 20.0, 60.0, 70.0],
        "bbox_original": [float(v) for v in pixel_box],
        "relative_area": pytest.approx((pixel_box[2] - pixel_box[0]) * (pixel_box[3] - pixel_box[1]) / (1000 * 700)),
        "valid": True,
        "reason": "",
    }

    # user, assistant (zoom), tool, assistant (answer); the loop stopped at the answer.
    assert out.non_tensor_batch["__num_turns__"][0] == 4
    text = zoom_loop.text(out)
    assert text.endswith("<answer>B</answer><|im_end|>")
    assert f"The image is {SEEN_W}x{SEEN_H} pixels" in text
    assert "<tool_response>\n<|vision_start|>" in text and "Zoomed in on [10, 20, 60, 70]" in text
    # Only the model's own tokens are trained on: the tool turn is masked out.
    response = out.batch["responses"][0][out.batch["response_mask"][0].bool()]
    trained = zoom_loop.tokenizer.decode(response.tolist())
    assert "<tool_response>" not in trained and "<|image_pad|>" not in trained
    assert "<answer>B</answer>" in trained and "zoom in." in trained
    # The hermes tool block is in the system turn only for the hermes syntax (box_protocol drops it).
    assert ("# Tools" in text) == (zoom_loop.fmt == "hermes")


BAD_ARGUMENTS = {
    # name: (bbox_2d as the model writes it, a fragment of the reason recorded)
    "non_numbers": ('["a", "b", "c", "d"]', "only numbers"),
    "nested_pairs": ("[[10, 20], [60, 70]]", "4 numbers, got 2"),
    "nested_singletons": ("[[10], [20], [60], [70]]", "only numbers"),
    "booleans": ("[true, 0, 1, 1]", "only numbers"),
    "nan": ("[NaN, 10, 50, 60]", "non-finite"),
    "infinity": ("[10, 10, Infinity, 60]", "non-finite"),
    "float_overflow": ("[10, 10, 1e999, 60]", "non-finite"),
    "huge_integer": ("[10, 10, 1" + "0" * 400 + ", 60]", "non-finite"),
    "too_few": ("[10, 20, 30]", "4 numbers, got 3"),
    "too_many": ("[10, 20, 30, 40, 50]", "4 numbers, got 5"),
    "empty_list": ("[]", "4 numbers, got 0"),
    "reversed": ("[60, 70, 10, 20]", "reversed"),
    "zero_area": ("[10, 20, 10, 70]", "reversed"),
    "outside_right": ("[300, 20, 400, 70]", "outside the image"),
    "outside_negative": ("[-50, -50, -10, -10]", "outside the image"),
    "string": ('"10, 20, 60, 70"', "got a string"),
    "null": ("null", "got null"),
    "object": ('{"x1": 10}', "got a dict"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_bad_arguments_finish_the_rollout_with_an_error_text(zoom_loop, name):
    raw, reason = BAD_ARGUMENTS[name]
    out = zoom_loop.run([THINK + zoom_loop.zoom_call(raw), ANSWER])
    assert_refused(zoom_loop, out, reason)


@pytest.mark.parametrize(
    "call, reason",
    [
        ("<box>the red sign</box>", "got a string of 12 characters"),
        ("<box>(10,20),(60,70)</box>", "got a string"),
        ("<box>[10, 20, 60", "got a string of 11 characters"),  # left open at the end of the turn
    ],
)
def test_malformed_box_still_reaches_the_tool(zoom_loop, call, reason):
    if zoom_loop.fmt != "ground_r1_box":
        pytest.skip("<box> syntax only")
    out = zoom_loop.run([THINK + call, ANSWER])
    assert_refused(zoom_loop, out, reason)


@pytest.mark.parametrize(
    "call, reason",
    [
        ('<tool_call>\n{"name": "image_zoom_in_tool", "arguments": [10, 20, 60, 70]}\n</tool_call>', "an object"),
        ('<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {"label": "sign"}}\n</tool_call>', "missing bbox"),
    ],
)
def test_hermes_arguments_that_are_no_box_object(zoom_loop, call, reason):
    if zoom_loop.fmt != "hermes":
        pytest.skip("hermes syntax only")
    out = zoom_loop.run([THINK + call, ANSWER])
    assert_refused(zoom_loop, out, reason)


def assert_refused(zoom_loop, out, reason: str) -> None:
    """The rollout went on to the answer, the model read the error, one invalid record, no crop."""
    calls = zoom_loop.server.calls
    assert len(calls) == 2 and len(calls[1]["images"]) == 1
    assert out.non_tensor_batch["__num_turns__"][0] == 4
    text = zoom_loop.text(out)
    assert text.endswith("<answer>B</answer><|im_end|>")
    tool_turn = text.split("<tool_response>\n", 1)[1].split("\n</tool_response>", 1)[0]
    assert tool_turn.startswith("Zoom failed:") and reason in tool_turn
    (record,) = records_of(out)
    assert record["valid"] is False and reason in record["reason"]
    assert record["bbox_original"] is None and record["relative_area"] is None
    assert out.non_tensor_batch["multi_modal_inputs"][0]["image_grid_thw"].shape == (1, 3)


def test_zoom_limit_and_one_decode_per_prompt(zoom_loop):
    """Two trajectories zoom three times each against max_zooms=2; they share one decoded original, which the
    worker no longer holds once the rollouts are over."""
    (tool,) = [t for t in zoom_loop.worker.tools if isinstance(t, RegionZoomTool)]
    decodes = tool.originals.decodes
    boxes = [[10, 20, 60, 70], [0, 0, 252, 168], [100, 100, 150, 150]]
    script = [THINK + zoom_loop.zoom_call(b) for b in boxes] + [ANSWER]
    out = zoom_loop.run(script, n=2)

    assert tool.originals.decodes == decodes + 1 and len(tool.originals) == 0
    for i in range(2):
        records = records_of(out, i)
        assert [r["valid"] for r in records] == [True, True, False]
        assert "zoom limit reached (2" in records[2]["reason"]
        assert records[1]["bbox_original"] == [0.0, 0.0, 1000.0, 700.0] and records[1]["relative_area"] == 1.0
        text = zoom_loop.text(out, i)
        assert "Zoom refused: zoom limit reached" in text and text.endswith("<answer>B</answer><|im_end|>")
        grid = out.non_tensor_batch["multi_modal_inputs"][i]["image_grid_thw"]
        assert grid.shape == (3, 3)  # the original and two crops
        assert image_pad_count(zoom_loop, out, i) == int(grid.prod(-1).sum()) // 4
    assert out.non_tensor_batch["__num_turns__"].tolist() == [8, 8]


def test_invalid_hermes_json_is_dropped_by_the_stock_parser(zoom_loop):
    """veRL's hermes parser skips a <tool_call> that is not JSON: no call, the turn ends the rollout."""
    if zoom_loop.fmt != "hermes":
        pytest.skip("hermes syntax only")
    out = zoom_loop.run([THINK + '<tool_call>\n{"name": "image_zoom_in_tool", "arguments": {bbox}}\n</tool_call>'])
    assert len(zoom_loop.server.calls) == 1
    assert out.non_tensor_batch["__num_turns__"][0] == 2
    assert records_of(out) == []


def test_batches_with_and_without_zooms_concatenate(zoom_loop):
    """ground_r1_tool_agent gives never-zooming trajectories an empty record list, so workers' outputs share
    their columns and DataProto.concat (which asserts that) can merge them."""
    zoomed = zoom_loop.run([THINK + zoom_loop.zoom_call([10, 20, 60, 70]), ANSWER])
    answered = zoom_loop.run([ANSWER])
    merged = DataProto.concat([answered, zoomed])
    assert len(merged) == 2
    assert [len(r) for r in merged.non_tensor_batch[ZOOM_RECORDS_KEY]] == [0, 1]
