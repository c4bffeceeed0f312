"""The CPU demo's inputs, fast: the tiny VQA rows are data-prep rows, and the warm start trains on exactly
what veRL's agent loop renders (the recipe's prompt, the zoom tool's crop and text), loss on assistant tokens.
"""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
import torch

from verl_ext.testing import tiny_policy, tiny_vqa
from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

ASSISTANT = re.compile(
    r"<think>Look closer\.</think>\n<box>\[(\d+), (\d+), (\d+), (\d+)\]</box><\|im_end\|>"
    r"<think>I see it\.</think>\n<answer>([A-D])</answer><\|im_end\|>"
)
WS = tiny_policy.WarmStart(rows=2, per_row=3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """The recipe config, tokenizer/processor and dataset-hook rows for a tiny model (weights not needed)."""
    from verl.utils import hf_processor, hf_tokenizer

    root = tmp_path_factory.mktemp("tiny_policy")
    model = build_tiny_qwen25vl(root / "model", with_model=False)
    data = tiny_vqa.write(root / "data", WS.rows, seed=3)
    config = tiny_policy.recipe_config(model, data)
    rows = tiny_policy.load_rows(config, hf_tokenizer(str(model)), hf_processor(str(model)))
    return config, rows, data


@pytest.fixture(scope="module")
def scripted(setup):
    config, rows, _ = setup
    return tiny_policy.scripted_rollouts(config, rows, WS)


def test_tiny_vqa_rows_are_data_prep_rows(setup) -> None:
    from verl_ext.data.rows import validate_row
    from verl_ext.data.schema import ANSWER_SCHEMA, ZOOM_TOOL
    from verl_ext.tools import AGENT_NAME

    _, rows, data = setup
    table = pq.read_table(data)
    assert table.schema.equals(ANSWER_SCHEMA, check_metadata=False)
    for raw in tiny_vqa.rows(WS.rows, seed=3):
        validate_row(raw)
    # Through the dataset hook: the frame is filled in and the zoom tool gets the bytes and the run's bounds.
    for row in rows:
        assert row["data_source"] == "visual_cot" and row["agent_name"] == AGENT_NAME
        extra = row["extra_info"]
        frame = f"The image is {extra['resized_width']}x{extra['resized_height']} pixels"
        assert frame in row["raw_prompt"][0]["content"][0]["text"]
        create = row["tools_kwargs"][ZOOM_TOOL]["create_kwargs"]
        assert isinstance(create["image_bytes"], bytes)
        assert create["min_pixels"] == tiny_policy.TINY_MIN_PIXELS
        assert create["max_pixels"] == tiny_policy.TINY_MAX_PIXELS


def test_scripted_boxes_fill_every_scale_bin() -> None:
    import random

    from verl_ext.algorithms.srpo import scale_bins

    rng = random.Random(0)
    shares = []
    for width, height in tiny_vqa.SIZES:
        for _ in range(30):
            x1, y1, x2, y2 = map(int, re.findall(r"\d+", tiny_policy.zoom_turn(width, height, rng).split("<box>")[1]))
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            shares.append((x2 - x1) * (y2 - y1) / (width * height))
    assert set(scale_bins(torch.tensor(shares), 3).tolist()) == {0, 1, 2}


def test_warm_start_trains_on_what_the_agent_loop_renders(scripted) -> None:
    """Loss targets are the assistant's two turns (and their end tokens) only; between them the agent loop put
    the zoom tool's turn with the crop as a second image, and the crop is the box the script asked for."""
    batch, tokenizer = scripted
    assert len(batch) == WS.rows * WS.per_row
    for i in range(len(batch)):
        inputs, targets, mask = tiny_policy._model_inputs(batch, [i])
        assistant = tokenizer.decode(targets[0][mask[0].bool()].tolist(), skip_special_tokens=False)
        match = ASSISTANT.fullmatch(assistant)
        assert match, assistant
        context = tokenizer.decode(targets[0][~mask[0].bool()].tolist(), skip_special_tokens=False)
        box = ", ".join(match.groups()[:4])
        assert "<tool_response>\n<|vision_start|><|image_pad|>" in context
        assert f"Zoomed in on [{box}] of the" in context
        assert inputs["image_grid_thw"].shape[0] == 2, "the question image and the crop"
        records = batch.non_tensor_batch["zoom_records"][i]
        assert len(records) == 1 and records[0]["valid"]
        assert records[0]["bbox_model"] == [float(v) for v in match.groups()[:4]]


def test_scripted_rollouts_are_deterministic(setup, scripted) -> None:
    config, rows, _ = setup
    again, _ = tiny_policy.scripted_rollouts(config, rows, WS)
    assert torch.equal(again.batch["input_ids"], scripted[0].batch["input_ids"])
    assert torch.equal(again.batch["response_mask"], scripted[0].batch["response_mask"])


def test_answers_follow_p_correct(setup) -> None:
    import random

    rng = random.Random(0)
    answers = [re.search(r"<answer>(.)</answer>", tiny_policy.answer_turn("B", rng, 0.75))[1] for _ in range(400)]
    assert 0.65 < answers.count("B") / len(answers) < 0.85
    assert set(answers) == set("ABCD")
