"""The one decoding: orientation as exif_transpose applies it, boxes mapped the same way, alpha on white."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from verl_ext.imaging import ORIENTATION_TAG, load_rgb, orient_box, oriented_size, probe_orientation


def _jpeg_with_orientation(array: np.ndarray, value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = value
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("value", range(1, 9))
def test_orient_box_follows_exif_transpose(value: int) -> None:
    width, height, box = 60, 40, (5, 7, 23, 19)
    stored = np.zeros((height, width, 3), dtype=np.uint8)
    stored[box[1] : box[3], box[0] : box[2]] = 255
    data = _jpeg_with_orientation(stored, value)
    assert probe_orientation(data) == value

    shown = np.asarray(load_rgb(data))
    assert (shown.shape[1], shown.shape[0]) == oriented_size(width, height, value)
    ys, xs = np.nonzero(shown[..., 0])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == orient_box(box, value, width, height)


def test_transparency_is_white_like_qwen_loader() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    pixels = np.asarray(load_rgb(buffer.getvalue()))
    assert tuple(pixels[0, 0]) == (10, 20, 30)
    assert tuple(pixels[3, 3]) == (255, 255, 255)
