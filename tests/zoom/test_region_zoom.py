"""The zoom tool on its own: exact crops from the original decoded the project's one way, image sources, row data
treated like model output (invalid record and message, never a raise or a hang), one shared decode per image."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageOps
from verl.tools.tool_registry import initialize_tools_from_config

from verl_ext.config import TOOL_CONFIG
from verl_ext.evidence import ZOOM_RECORDS_KEY, evidence_scale
from verl_ext.geometry import Frame
from verl_ext.tools.region_zoom import TOOL_NAME, RegionZoomTool

BOUNDS = {"min_pixels": 3136, "max_pixels": 401408}


def coordinate_image(width: int, height: int) -> Image.Image:
    """Each pixel spells its own (x, y): R = x mod 256, G = y mod 256, B = x // 256 + 16 * (y // 256)."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def zoom(tool: RegionZoomTool, agent_data, parameters, **create_kwargs):
    """One create/execute/release cycle, as ToolAgentLoop runs it around every call; the row carries the run's
    pixel bounds (as the dataset hook writes them) unless a test overrides them (``None`` drops one)."""
    create_kwargs = {k: v for k, v in {**BOUNDS, **create_kwargs}.items() if v is not None}

    async def cycle():
        instance_id, _ = await tool.create(create_kwargs=create_kwargs)
        try:
            return await tool.execute(instance_id, parameters, agent_data=agent_data)
        finally:
            await tool.release(instance_id)

    return asyncio.run(cycle())


@pytest.fixture
def tool(tmp_path) -> RegionZoomTool:
    return RegionZoomTool({"type": "native", "image_root": str(tmp_path)})


def test_crop_is_the_matching_region_of_a_downscaled_original(tool, tmp_path, agent_data):
    # 3000x2000 is seen as 756x504 at max_pixels 401408 (smart_resize scales it down).
    coordinate_image(3000, 2000).save(tmp_path / "big.png")
    response, _, metrics = zoom(tool, agent_data, {"bbox_2d": [100, 50, 300, 250]}, image_path="big.png")
    sx, sy = 3000 / 756, 2000 / 504
    x1, y1 = math.floor(100 * sx), math.floor(50 * sy)
    x2, y2 = math.ceil(300 * sx), math.ceil(250 * sy)
    crop = np.asarray(response.image[0]).astype(int)
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    # The crop's pixels name their own coordinates in the original.
    assert (crop[0, 0, 0], crop[0, 0, 1], crop[0, 0, 2]) == (x1 % 256, y1 % 256, x1 // 256 + 16 * (y1 // 256))
    np.testing.assert_array_equal(crop, np.asarray(coordinate_image(3000, 2000))[y1:y2, x1:x2])
    assert f"{x2 - x1}x{y2 - y1} pixels of the original" in response.text and "756x504 image" in response.text
    (record,) = agent_data.extra_fields[ZOOM_RECORDS_KEY]
    assert record["bbox_original"] == [x1, y1, x2, y2] and record["valid"] and metrics["valid"]
    assert record["relative_area"] == pytest.approx((x2 - x1) * (y2 - y1) / 6e6)
    assert evidence_scale(agent_data.extra_fields[ZOOM_RECORDS_KEY]) == record["relative_area"]


def test_tiny_box_grows_to_28_px_and_clamps_at_the_border(tool, tmp_path, agent_data):
    coordinate_image(3000, 2000).save(tmp_path / "big.png")
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [755.5, 503.6, 756, 504]}, image_path="big.png")
    assert response.image[0].size == (28, 28)
    assert agent_data.extra_fields[ZOOM_RECORDS_KEY][0]["bbox_original"] == [2972, 1972, 3000, 2000]
    # A box hanging over the edge is clamped to the image.
    zoom(tool, agent_data, {"bbox_2d": [-100, -100, 189, 126]}, image_path="big.png")
    assert agent_data.extra_fields[ZOOM_RECORDS_KEY][1]["bbox_original"] == [0, 0, 750, 500]


def test_too_thin_region_is_refused(tool, tmp_path, agent_data):
    Image.new("RGB", (8000, 400)).save(tmp_path / "strip.png")
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [0, 10, 10000, 10.5]}, image_path="strip.png")
    assert response.image is None and "too thin" in response.text
    assert agent_data.extra_fields[ZOOM_RECORDS_KEY][0]["valid"] is False


def test_image_bytes_and_row_pixel_bounds(tool, agent_data):
    """image_bytes work; the row's min/max_pixels (the run's processor bounds) set the frame the box is read in."""
    buf = io.BytesIO()
    coordinate_image(1000, 700).save(buf, format="PNG")
    kwargs = {"image_bytes": buf.getvalue(), "min_pixels": 3136, "max_pixels": 64 * 28 * 28}
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [0, 0, 126, 84]}, **kwargs)  # half of the 252x168 frame
    assert agent_data.extra_fields[ZOOM_RECORDS_KEY][0]["bbox_original"] == [0, 0, 500, 350]
    assert "252x168 image" in response.text


def test_one_decode_per_image_while_held_and_released_after(tool, tmp_path, monkeypatch):
    """Trajectories zooming into the same image share one decoded copy; once every holder released it, the copy is
    gone (the next trajectory decodes again); a different image is decoded on its own."""
    coordinate_image(640, 480).save(tmp_path / "a.png")
    coordinate_image(320, 240).save(tmp_path / "b.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    first, second, other = (SimpleNamespace(extra_fields={}) for _ in range(3))
    for _ in range(3):
        zoom(tool, first, {"bbox_2d": [10, 10, 100, 100]}, image_path="a.png")
    zoom(tool, second, {"bbox_2d": [10, 10, 100, 100]}, image_path="a.png")
    zoom(tool, other, {"bbox_2d": [10, 10, 100, 100]}, image_path="b.png")
    assert len(opened) == 2 and len(tool.originals) == 2
    assert [r["valid"] for r in first.extra_fields[ZOOM_RECORDS_KEY]] == [True] * 3
    json.dumps(first.extra_fields)  # the decoded image stays off extra_fields, which veRL serialises

    for trajectory in (first, second, other):
        tool.release_trajectory(trajectory)
    assert len(tool.originals) == 0 and tool.originals.held_bytes == 0
    zoom(tool, SimpleNamespace(extra_fields={}), {"bbox_2d": [10, 10, 100, 100]}, image_path="a.png")
    assert len(opened) == 3


def test_an_original_over_the_cache_budget_is_decoded_once_and_counted(tmp_path):
    """An image that does not fit the budget is still one shared copy, counted while held (issue 17)."""
    coordinate_image(640, 480).save(tmp_path / "a.png")  # 0.9 MB decoded, over a 0 MB budget
    tool = RegionZoomTool({"type": "native", "image_root": str(tmp_path), "cache_mb": 1})
    tool.originals.budget_bytes = 0
    trajectories = [SimpleNamespace(extra_fields={}) for _ in range(2)]
    for t in trajectories:
        zoom(tool, t, {"bbox_2d": [10, 10, 100, 100]}, image_path="a.png")
        assert t.extra_fields[ZOOM_RECORDS_KEY][0]["valid"]
    assert len(tool.originals) == 1 and tool.originals.decodes == 1 and tool.originals.held_bytes == 640 * 480 * 3


@pytest.mark.parametrize(
    "orientation, mode", [(6, "RGB"), (8, "RGB"), (3, "RGB"), (1, "RGBA")], ids=["exif6", "exif8", "exif3", "rgba"]
)
def test_crop_is_cut_from_the_image_the_model_saw(tool, tmp_path, agent_data, orientation, mode):
    """EXIF orientation applied and transparency on white, as veRL's dataset and Qwen's loader show the image."""
    pixels = np.asarray(coordinate_image(600, 400))
    if mode == "RGBA":
        alpha = np.where((np.arange(600)[None, :] // 50) % 2 == 0, 0, 255).repeat(400, 0).astype(np.uint8)
        stored = Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
        name = "alpha.png"
        stored.save(tmp_path / name)
        seen = np.where(alpha[..., None] == 0, 255, pixels).astype(np.uint8)  # transparent columns -> white
    else:
        stored = Image.fromarray(pixels, "RGB")
        exif = stored.getexif()
        exif[0x0112] = orientation
        name = f"o{orientation}.png"  # PNG keeps the pixels exact; Pillow reads its eXIf orientation like JPEG's
        stored.save(tmp_path / name, exif=exif)
        seen = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / name)).convert("RGB"))
    h, w = seen.shape[:2]
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [0, 0, 56, 84]}, image_path=name)
    (record,) = agent_data.extra_fields[ZOOM_RECORDS_KEY]
    x1, y1, x2, y2 = (int(v) for v in record["bbox_original"])
    assert f"{tool_frame(w, h)} image" in response.text
    np.testing.assert_array_equal(np.asarray(response.image[0]), seen[y1:y2, x1:x2])


def tool_frame(width: int, height: int) -> str:
    frame = Frame.of(width, height, **BOUNDS)
    return f"{frame.resized_width}x{frame.resized_height}"


def test_orientation_6_jpeg_crop_matches_the_oriented_image(tool, tmp_path, agent_data):
    """A real camera JPEG (orientation 6, a quarter turn): the crop is the region of the turned picture."""
    stored = coordinate_image(600, 400)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "camera.jpg", exif=exif, quality=95)
    seen = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "camera.jpg")).convert("RGB"))
    assert seen.shape[:2] == (600, 400)  # portrait once turned
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [28, 300, 140, 560]}, image_path="camera.jpg")
    x1, y1, x2, y2 = (int(v) for v in agent_data.extra_fields[ZOOM_RECORDS_KEY][0]["bbox_original"])
    assert y2 > 400  # only possible in the oriented (400 wide, 600 high) frame
    np.testing.assert_array_equal(np.asarray(response.image[0]), seen[y1:y2, x1:x2])


@pytest.mark.parametrize(
    "create_kwargs, reason",
    [
        ({}, "neither image_path nor image_bytes"),
        ({"image_path": "../outside.png"}, "escapes image_root"),
        ({"image_path": "/etc/passwd"}, "escapes image_root"),
        ({"image_path": "missing.png"}, "No such file"),
        ({"image_bytes": b"not an image"}, "cannot decode"),
        ({"image_bytes": "a string"}, "image_bytes must be bytes"),
        ({"image_path": "a.png", "max_pixels": -1}, "max_pixels must be a positive integer"),
        ({"image_path": "a.png", "min_pixels": 5000, "max_pixels": 4000}, "min_pixels 5000 exceed its max_pixels"),
        ({"image_path": "a.png", "min_pixels": None}, "lack min_pixels"),
        ({"image_path": "a.png", "max_pixels": None}, "lack max_pixels"),
        ({"image_path": "a\x00.png"}, "contains a NUL"),
        ({"image_path": "fifo"}, "not a regular file"),
        ({"image_path": "."}, "not a regular file"),
        ({"image_path": ["a.png"]}, "image_path must be a string"),
    ],
)
def test_unavailable_original_is_an_invalid_call_not_a_crash(tool, tmp_path, agent_data, create_kwargs, reason):
    """Row data gets model-output treatment: one invalid record and a message, promptly (a FIFO would block a
    reader forever), never an exception."""
    coordinate_image(64, 64).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "fifo")
    response, _, _ = zoom(tool, agent_data, {"bbox_2d": [0, 0, 10, 10]}, **create_kwargs)
    assert response.image is None and "image is unavailable" in response.text and reason in response.text
    (record,) = agent_data.extra_fields[ZOOM_RECORDS_KEY]
    assert record["valid"] is False and reason in record["reason"]


def test_relative_path_needs_an_image_root(tmp_path):
    coordinate_image(64, 64).save(tmp_path / "a.png")
    tool = RegionZoomTool({"type": "native"})
    relative, absolute = SimpleNamespace(extra_fields={}), SimpleNamespace(extra_fields={})
    zoom(tool, relative, {"bbox_2d": [0, 0, 10, 10]}, image_path="a.png")
    zoom(tool, absolute, {"bbox_2d": [0, 0, 10, 10]}, image_path=str(tmp_path / "a.png"))
    assert "needs image_root" in relative.extra_fields[ZOOM_RECORDS_KEY][0]["reason"]
    assert absolute.extra_fields[ZOOM_RECORDS_KEY][0]["valid"]


def test_tool_yaml_loads_through_verl(tool_yaml, tmp_path, monkeypatch):
    """The recipe's YAML goes through veRL's own loader; image_root can come from GROUND_R1_IMAGE_ROOT."""
    (tool,) = initialize_tools_from_config(str(tool_yaml(tmp_path / "t.yaml", tmp_path, max_zooms=3, cache_mb=7)))
    assert isinstance(tool, RegionZoomTool) and tool.name == TOOL_NAME
    assert (tool.max_zooms, tool.originals.budget_bytes) == (3, 7 * 2**20)
    monkeypatch.setenv("GROUND_R1_IMAGE_ROOT", str(tmp_path / "root"))
    (tool,) = initialize_tools_from_config(str(TOOL_CONFIG))
    assert tool.image_root == (tmp_path / "root").resolve()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"max_zooms": 0}, "max_zooms"),
        ({"min_pixels": 3136}, "rows carry the run's data.min_pixels"),
        ({"max_pixels": 401408}, "rows carry the run's data.max_pixels"),
        ({"cache_mb": -1}, "cache_mb"),
        ({"decode_timeout_s": 0}, "decode_timeout_s"),
    ],
)
def test_bad_tool_config_fails_at_start(config, message):
    with pytest.raises(ValueError, match=message):
        RegionZoomTool({"type": "native", **config})


def test_schema_must_keep_the_tool_name():
    from verl_ext.tools.region_zoom import TOOL_SCHEMA

    renamed = TOOL_SCHEMA.model_copy(deep=True)
    renamed.function.name = "zoom"
    with pytest.raises(ValueError, match=TOOL_NAME):
        RegionZoomTool({"type": "native"}, renamed)


def test_image_whose_resized_frame_is_empty_is_refused(tool, tmp_path, agent_data):
    """qwen_vl_utils' smart_resize gives a 28x1807 image a width of 0 at max_pixels 50176."""
    Image.new("RGB", (28, 1807)).save(tmp_path / "thin.png")
    zoom(tool, agent_data, {"bbox_2d": [0, 0, 10, 10]}, image_path="thin.png", max_pixels=64 * 28 * 28)
    assert "empty resized frame" in agent_data.extra_fields[ZOOM_RECORDS_KEY][0]["reason"]
