"""One source of the frame: changing the run's data.max_pixels alone moves the frame of the dataset, the zoom tool
and the reward together, so a box the model writes in the frame it was shown lands on the same pixels everywhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from dp_fixtures import hook_config
from PIL import Image

from verl_ext.data.dataset import GroundR1Dataset
from verl_ext.data.images import probe_file
from verl_ext.data.rows import ImageRef, build_row, grounding_messages, validate_row
from verl_ext.data.schema import GROUNDING_SCHEMA
from verl_ext.data.writer import SplitWriter
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.geometry import Frame, iou
from verl_ext.reward import compute_score
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_processor
from verl_ext.tools.region_zoom import RegionZoomTool

TRUTH = [300.0, 200.0, 700.0, 500.0]


@pytest.fixture(scope="module")
def grounding_parquet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one_frame")
    Image.new("RGB", (1200, 800), (90, 120, 150)).save(folder / "photo.jpg")
    return write_grounding_row(folder, folder / "photo.jpg", "the blue square", TRUTH)


def write_grounding_row(folder: Path, image_path: Path, expression: str, truth: list[float]) -> Path:
    """One RefCOCO-style row (zoom tool on) in the converters' schema: ``folder/val.parquet``."""
    row = build_row(
        data_source="refcoco",
        messages=grounding_messages(expression, "box"),
        image=ImageRef.of(image_path, probe_file(image_path, "fixture", 0)),
        ability="grounding",
        ground_truth=truth,
        extra_info={"split": "val", "index": 0},
        use_tool=True,
    )
    validate_row(row)
    with SplitWriter(folder, GROUNDING_SCHEMA) as writer:
        writer.write("val", row)
    return folder / "val.parquet"


def zoom(create_kwargs: dict, box: list[float]) -> dict:
    tool = RegionZoomTool({"type": "native"})
    agent_data = type("AgentData", (), {})()
    agent_data.extra_fields = {}

    async def cycle():
        instance_id, _ = await tool.create(create_kwargs=create_kwargs)
        try:
            await tool.execute(instance_id, {"bbox_2d": box}, agent_data=agent_data)
        finally:
            await tool.release(instance_id)

    asyncio.run(cycle())
    (record,) = agent_data.extra_fields[ZOOM_RECORDS_KEY]
    return record


def test_max_pixels_alone_moves_the_frame_of_dataset_tool_and_reward_together(grounding_parquet, tmp_path):
    processor = build_processor()
    frames = {}
    for max_pixels in (16 * 28 * 28, TINY_MAX_PIXELS):
        config = hook_config(tmp_path, min_pixels=TINY_MIN_PIXELS, max_pixels=max_pixels)
        row = GroundR1Dataset(str(grounding_parquet), processor.tokenizer, config, processor=processor)[0]
        info = row["extra_info"]
        frame = Frame(info["image_width"], info["image_height"], info["resized_width"], info["resized_height"])
        frames[max_pixels] = frame
        text = " ".join(c["text"] for m in row["raw_prompt"] for c in m["content"] if c["type"] == "text")
        assert f"{frame.resized_width}x{frame.resized_height} pixels" in text  # what the model is told

        # The model writes the truth in the frame it was shown: the tool crops it and the reward scores it.
        said = [round(v, 3) for v in frame.to_resized(TRUTH)]
        record = zoom(row["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"], said)
        assert record["valid"] and iou(record["bbox_original"], TRUTH) > 0.98
        answer = f'<think>there</think><answer>{{"bbox_2d": {json.dumps(said)}}}</answer>'
        score = compute_score("refcoco", answer, TRUTH, info)
        assert score["iou"] > 0.98 and score["acc"] == 1.0

    small, large = frames.values()
    assert (small.resized_width, small.resized_height) != (large.resized_width, large.resized_height)
    # Had any of the three kept the other run's frame, the same words would point elsewhere.
    said_small = small.to_resized(TRUTH)
    assert iou(large.to_original(said_small), TRUTH) < 0.5


def test_the_model_sees_transparency_on_white_like_the_tool_and_qwen(tmp_path):
    """veRL alone would convert("RGB") a decoded RGBA image (transparent pixels black); the hook decodes it the
    project's one way, so the pixels the processor gets are the ones the zoom tool crops from."""
    rgba = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    rgba.paste((200, 30, 40, 255), (100, 100, 300, 200))
    rgba.save(tmp_path / "logo.png")
    parquet = write_grounding_row(tmp_path, tmp_path / "logo.png", "the red bar", [100.0, 100.0, 300.0, 200.0])
    processor = build_processor()
    config = hook_config(tmp_path, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    dataset = GroundR1Dataset(str(parquet), processor.tokenizer, config, processor=processor)
    images, _, _ = GroundR1Dataset._process_multi_modal_info(dataset[0]["raw_prompt"], 14, config)
    seen = images[0].convert("RGB")
    width, height = seen.size
    assert seen.getpixel((2, 2)) == (255, 255, 255)  # transparent corner: white, not black
    assert seen.getpixel((width * 200 // 600, height * 150 // 400)) == (200, 30, 40)
