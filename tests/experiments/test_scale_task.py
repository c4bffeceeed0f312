"""The synthetic scale task (verl_ext.testing.scale_task): the target is where the row says, the zoom tool's crop at
the intended scale (the named quadrant) holds it and no other colour, and the full image at the run's max_pixels
shows it far smaller than one patch, next to three other colours."""

from __future__ import annotations

import asyncio
import io
import random
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from verl_ext.algorithms.srpo import scale_bins
from verl_ext.data.schema import ZOOM_TOOL
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.geometry import resized_size
from verl_ext.testing import scale_task
from verl_ext.testing.scale_task import COLOUR_NAMES, QUADRANTS, SIDE, TARGET_SIDES, zoom_boxes
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS
from verl_ext.testing.tiny_vqa import COLOURS
from verl_ext.tools.region_zoom import RegionZoomTool

#: The run's frame: the dataset hook writes these bounds into every row's tool kwargs.
BOUNDS = {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pixels(row: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")).astype(int)


def _colour(row: dict) -> str:
    return COLOUR_NAMES[ord(row["reward_model"]["ground_truth"]) - ord("A")]


def _colours_in(pixels: np.ndarray) -> set[str]:
    return {name for name, rgb in COLOURS.items() if (pixels == rgb).all(-1).any()}


def _zoom(row: dict, box: tuple[int, ...]):
    """One call of the real zoom tool, as the agent loop makes it, on the row's own tool kwargs."""
    tool = RegionZoomTool({"type": "native"})
    create_kwargs = {**row["extra_info"]["tools_kwargs"][ZOOM_TOOL]["create_kwargs"], **BOUNDS}
    agent_data = SimpleNamespace(extra_fields={})

    async def cycle():
        instance_id, _ = await tool.create(create_kwargs=create_kwargs)
        try:
            return await tool.execute(instance_id, {"bbox_2d": list(box)}, agent_data=agent_data)
        finally:
            await tool.release(instance_id)

    response, _, _ = asyncio.run(cycle())
    (record,) = agent_data.extra_fields[ZOOM_RECORDS_KEY]
    return response, record


@FEW
@given(seed=st.integers(0, 10_000))
def test_the_target_is_where_the_row_says(seed: int) -> None:
    for row in scale_task.rows(8, seed, "train"):
        pixels = _pixels(row)
        x1, y1, x2, y2 = (int(v) for v in row["extra_info"]["evidence_boxes"][0])
        rgb = COLOURS[_colour(row)]
        # Every pixel of the box is the answer's colour, and the box is tight: the ring around it is not.
        assert (pixels[y1:y2, x1:x2] == rgb).all()
        ring = np.concatenate([pixels[y1 - 1, x1:x2], pixels[y2, x1:x2], pixels[y1:y2, x1 - 1], pixels[y1:y2, x2]])
        assert not (ring == rgb).all(-1).any()
        # The answer's colour appears nowhere else; the question names the quadrant that holds the box.
        assert (pixels == rgb).all(-1).sum() == (x2 - x1) * (y2 - y1)
        quadrant = row["extra_info"]["category"]
        qx1, qy1, qx2, qy2 = scale_task.quadrant_rect(quadrant, SIDE, SIDE)
        assert qx1 <= x1 and qy1 <= y1 and x2 <= qx2 and y2 <= qy2
        assert f"in the {quadrant} quadrant" in row["prompt"][1]["content"]
        assert row["extra_info"]["options"] == COLOUR_NAMES and _colours_in(pixels) == set(COLOUR_NAMES)


@FEW
@given(seed=st.integers(0, 10_000))
def test_the_zoom_on_the_named_quadrant_holds_the_target_alone_at_full_resolution(seed: int) -> None:
    width, height = resized_size(SIDE, SIDE, **BOUNDS)
    for row in scale_task.rows(4, seed, "test"):
        box = zoom_boxes(width, height)["quadrant"][QUADRANTS.index(row["extra_info"]["category"])]
        response, record = _zoom(row, box)
        crop = np.asarray(response.image[0]).astype(int)
        cx1, cy1, cx2, cy2 = (int(v) for v in record["bbox_original"])
        x1, y1, x2, y2 = (int(v) for v in row["extra_info"]["evidence_boxes"][0])
        assert cx1 <= x1 and cy1 <= y1 and x2 <= cx2 and y2 <= cy2
        # The crop shows the target pixel for pixel, and no other coloured square.
        assert (crop[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1] == COLOURS[_colour(row)]).all()
        assert _colours_in(crop) == {_colour(row)}
        # At full resolution: the crop is no larger than the frame the processor shows, so it is not shrunk.
        assert crop.shape[0] * crop.shape[1] <= TINY_MAX_PIXELS
        # Its evidence scale falls in SRPO's smallest of the recipe's three bins.
        assert record["relative_area"] == pytest.approx(0.25)
        assert int(scale_bins(np.array([record["relative_area"]]), 3, None)[0]) == 0


@FEW
@given(seed=st.integers(0, 10_000))
def test_larger_zooms_hold_the_target_next_to_other_colours(seed: int) -> None:
    """The middle and largest scales are the safe bet (they contain the target) but never show it alone."""
    width, height = resized_size(SIDE, SIDE, **BOUNDS)
    (row,) = scale_task.rows(1, seed, "train")
    x1, y1, x2, y2 = row["extra_info"]["evidence_boxes"][0]
    boxes = zoom_boxes(width, height)
    containing = 0
    for scale, k in (("half", 1), ("full", 2)):
        for box in boxes[scale]:
            response, record = _zoom(row, box)
            assert int(scale_bins(np.array([record["relative_area"]]), 3, None)[0]) == k
            cx1, cy1, cx2, cy2 = record["bbox_original"]
            if cx1 <= x1 and cy1 <= y1 and x2 <= cx2 and y2 <= cy2:
                containing += 1
                assert len(_colours_in(np.asarray(response.image[0]).astype(int))) >= 2
    assert containing == 3  # two of the four halves and the whole image


def test_the_full_image_does_not_resolve_the_target() -> None:
    """At data.max_pixels the model sees the image at half size: a target is under half of one 28-px token."""
    width, height = resized_size(SIDE, SIDE, **BOUNDS)
    assert (width, height) == (224, 224)
    assert max(TARGET_SIDES) * width / SIDE < 14


def test_splits_are_real_parquet_with_balanced_held_out_questions(tmp_path) -> None:
    paths = scale_task.write(tmp_path, train=8, test=16, seed=3)
    train, test = (pq.read_table(paths[s]).to_pylist() for s in ("train", "test"))
    assert len(train) == 8 and len(test) == 16
    assert {r["extra_info"]["split"] for r in test} == {"test"}
    train_images = {r["images"][0]["bytes"] for r in train}
    assert not train_images & {r["images"][0]["bytes"] for r in test}, "held-out images must be new"
    # Every quadrant and every answer equally often in the held-out split.
    assert sorted(r["extra_info"]["category"] for r in test) == sorted(QUADRANTS * 4)
    assert sorted(r["reward_model"]["ground_truth"] for r in test) == sorted("ABCD" * 4)
    # Seeded: the same call writes the same rows.
    again = scale_task.write(tmp_path / "again", train=8, test=16, seed=3)
    assert pq.read_table(again["test"]).to_pylist() == test


def test_the_warm_start_answers_right_only_when_its_zoom_holds_the_target() -> None:
    width, height = resized_size(SIDE, SIDE, **BOUNDS)
    (row,) = scale_task.rows(1, 5, "train")
    row["extra_info"] = {**row["extra_info"], "resized_width": width, "resized_height": height}
    rng = random.Random(0)
    seen = {True: [], False: []}
    for _ in range(200):
        zoom_text, answer_text = scale_task.script(row, rng, p_correct=1.0)
        box = [int(v) for v in zoom_text.split("<box>[")[1].split("]")[0].split(",")]
        x1, y1, x2, y2 = row["extra_info"]["evidence_boxes"][0]
        holds = 2 * box[0] <= x1 and 2 * box[1] <= y1 and x2 <= 2 * box[2] and y2 <= 2 * box[3]
        seen[holds].append(answer_text.split("<answer>")[1][0] == row["reward_model"]["ground_truth"])
    assert seen[True] and all(seen[True])
    assert seen[False] and 0.05 < np.mean(seen[False]) < 0.5  # a guess among four letters
