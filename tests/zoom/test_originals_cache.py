"""The originals cache is a bound (issue 17), through the zoom tool: concurrent trajectories zooming into one image
larger than ``cache_mb`` share one decode that the cache counts; while it is held no other image starts decoding;
its last release frees it and lets the next image in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.tools.region_zoom import _STATE_ATTR, RegionZoomTool

BOUNDS = {"min_pixels": 3136, "max_pixels": 401408}
WIDTH, HEIGHT = 1000, 700  # 2.1 MB decoded (RGB): over a 1 MB budget
NBYTES = WIDTH * HEIGHT * 3
TRAJECTORIES = 8


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("big.png", "other.png"):
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def make_tool(root, **config) -> RegionZoomTool:
    return RegionZoomTool({"type": "native", "image_root": str(root), "cache_mb": 1, **config})


async def zoom(tool: RegionZoomTool, agent_data, image: str) -> dict:
    """One zoom as ToolAgentLoop runs it; the trajectory keeps its original until ``release_trajectory``."""
    instance_id, _ = await tool.create(create_kwargs={"image_path": image, **BOUNDS})
    try:
        await tool.execute(instance_id, {"bbox_2d": [10, 10, 200, 200]}, agent_data=agent_data)
    finally:
        await tool.release(instance_id)
    return agent_data.extra_fields[ZOOM_RECORDS_KEY][-1]


def held_image(agent_data) -> Image.Image:
    """The decoded original the trajectory holds (the tool keeps it on the trajectory's state)."""
    return getattr(agent_data, _STATE_ATTR).held.image


def test_concurrent_trajectories_on_an_over_budget_image_share_one_counted_decode(images):
    tool = make_tool(images)
    assert NBYTES > tool.originals.budget_bytes
    trajectories = [SimpleNamespace(extra_fields={}) for _ in range(TRAJECTORIES)]

    async def run():
        # half of them zoom at once, the others one after another (at later turns) while the first still hold it
        half = TRAJECTORIES // 2
        records = await asyncio.gather(*(zoom(tool, t, "big.png") for t in trajectories[:half]))
        records += [await zoom(tool, t, "big.png") for t in trajectories[half:]]
        assert all(r["valid"] for r in records)
        assert tool.originals.decodes == 1  # was 5: every later trajectory decoded its own copy
        assert tool.originals.held_bytes == NBYTES  # was 0: the copies were not counted
        assert len({id(held_image(t)) for t in trajectories}) == 1  # one copy in memory, not 5
        for t in trajectories[:-1]:
            tool.release_trajectory(t)
        assert tool.originals.held_bytes == NBYTES  # held while any trajectory uses it
        tool.release_trajectory(trajectories[-1])
        assert tool.originals.held_bytes == 0 and len(tool.originals) == 0

    asyncio.run(run())


def test_no_other_image_starts_while_an_over_budget_one_is_held(images):
    tool = make_tool(images)
    holder, waiter = SimpleNamespace(extra_fields={}), SimpleNamespace(extra_fields={})

    async def run():
        assert (await zoom(tool, holder, "big.png"))["valid"]
        waiting = asyncio.create_task(zoom(tool, waiter, "other.png"))
        await asyncio.sleep(0.2)  # lets the zoom reach the cache; it can only be waiting there
        assert not waiting.done() and tool.originals.decodes == 1
        assert tool.originals.held_bytes == NBYTES
        tool.release_trajectory(holder)  # the room it waited for
        assert (await waiting)["valid"]
        assert tool.originals.decodes == 2 and tool.originals.held_bytes == NBYTES  # only the other image now
        tool.release_trajectory(waiter)

    asyncio.run(run())


def test_a_zoom_that_finds_no_room_in_time_is_invalid_and_leaves_nothing_behind(images):
    tool = make_tool(images, decode_timeout_s=0.3)
    holder, late = SimpleNamespace(extra_fields={}), SimpleNamespace(extra_fields={})

    async def run():
        assert (await zoom(tool, holder, "big.png"))["valid"]
        record = await zoom(tool, late, "other.png")
        assert not record["valid"] and "longer than 0.3 s" in record["reason"]
        assert tool.originals.decodes == 1 and tool.originals.held_bytes == NBYTES
        tool.release_trajectory(holder)
        tool.release_trajectory(late)  # a trajectory without an original releases nothing
        assert tool.originals.held_bytes == 0 and len(tool.originals) == 0
        again = SimpleNamespace(extra_fields={})
        assert (await zoom(tool, again, "other.png"))["valid"]  # the room is there again
        tool.release_trajectory(again)

    asyncio.run(run())


def test_images_that_fit_decode_side_by_side_within_the_budget(images):
    tool = make_tool(images, cache_mb=5)  # room for two 2.1 MB originals
    first, second = SimpleNamespace(extra_fields={}), SimpleNamespace(extra_fields={})

    async def run():
        records = await asyncio.gather(zoom(tool, first, "big.png"), zoom(tool, second, "other.png"))
        assert all(r["valid"] for r in records)
        assert tool.originals.decodes == 2 and tool.originals.held_bytes == 2 * NBYTES <= tool.originals.budget_bytes
        tool.release_trajectory(first)
        tool.release_trajectory(second)
        assert tool.originals.held_bytes == 0

    asyncio.run(run())
