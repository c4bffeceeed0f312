"""One decoding of every image: EXIF orientation applied, transparency flattened on white.

Everything that looks at pixels or sizes goes through here, so the model, the zoom tool, the reward and data
prep see the same picture:

- **Orientation applied** (``PIL.ImageOps.exif_transpose``): what every viewer shows, and what veRL's dataset
  already does (``datasets`` transposes on decode). Data prep records the *oriented* size and maps annotation
  boxes, which data sets give in the stored file's pixel frame (COCO does), into the oriented frame with
  :func:`orient_box`.
- **Alpha composited on white** (``qwen_vl_utils.vision_process.to_rgb``): what Qwen's own loader does at
  inference. veRL 0.9.1 would ``convert("RGB")`` a decoded RGBA image (transparent pixels black); the dataset
  hook hands veRL images already decoded here, so that path never runs on ours.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

#: EXIF tag of the orientation (1 = as stored; 2..8 = mirrored and/or rotated).
ORIENTATION_TAG = 0x0112
#: Orientations that swap width and height (a quarter turn).
_TRANSPOSING = frozenset({5, 6, 7, 8})

Source = str | os.PathLike | bytes | BinaryIO


def _open(source: Source) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    return Image.open(source)


def orientation(image: Image.Image) -> int:
    """EXIF orientation of an opened image (1 when absent or not a valid value)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block: treat the file as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` oriented and in RGB, transparency composited on white; decodes the pixels."""
    from qwen_vl_utils.vision_process import to_rgb as qwen_to_rgb

    oriented = ImageOps.exif_transpose(image)
    return qwen_to_rgb(oriented if oriented is not None else image)


def load_rgb(source: Source | Image.Image) -> Image.Image:
    """Decode ``source`` (a path, encoded bytes, a binary file or a PIL image) the one way; see the module doc."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    with _open(source) as raw:
        return to_rgb(raw)


def oriented_size(width: int, height: int, exif_orientation: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` stored image once its orientation is applied."""
    return (height, width) if exif_orientation in _TRANSPOSING else (width, height)


def orient_box(box: tuple[float, float, float, float], exif_orientation: int, width: int, height: int):
    """Map ``[x1, y1, x2, y2]`` from the stored ``width`` x ``height`` frame to the oriented frame.

    Follows ``exif_transpose``: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 270 (90 clockwise),
    7 transverse, 8 rotate 90 (counter-clockwise).
    """
    x1, y1, x2, y2 = box
    w, h = width, height
    corners = {
        1: (x1, y1, x2, y2),
        2: (w - x2, y1, w - x1, y2),
        3: (w - x2, h - y2, w - x1, h - y1),
        4: (x1, h - y2, x2, h - y1),
        5: (y1, x1, y2, x2),
        6: (h - y2, x1, h - y1, x2),
        7: (h - y2, w - x2, h - y1, w - x1),
        8: (y1, w - x2, y2, w - x1),
    }
    return corners.get(exif_orientation, corners[1])


def probe_orientation(path: Path | bytes) -> int:
    """EXIF orientation of a file or encoded image, reading the header only."""
    with _open(path) as image:
        return orientation(image)
