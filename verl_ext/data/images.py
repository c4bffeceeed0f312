"""Image loading and encoding for the converters: reading sizes cheaply, catching truncation, confining paths.

Probing reads the header (size, format, EXIF orientation) and checks the format's end marker for JPEG and
PNG instead of decoding every pixel, so converting tens of thousands of rows stays a matter of seconds;
other formats are decoded fully. Sizes are those of the stored file; ``verl_ext.imaging`` turns them (and
annotation boxes) into the oriented frame every other part of the project sees.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from verl_ext.data.validation import BadRecord
from verl_ext.imaging import orientation

_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


#: What opening or decoding a hostile file can raise (a decompression bomb is not an OSError).
_UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError)


@dataclass(frozen=True)
class ImageInfo:
    """Size of the stored file (before its EXIF orientation is applied), format and orientation (1..8)."""

    width: int
    height: int
    format: str
    orientation: int = 1


def resolve_in_root(root: Path, name: str, source: object, record: object) -> Path:
    """``root / name`` resolved; BadRecord when it escapes ``root`` (``..``, absolute paths, symlinks out)."""
    root = root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise BadRecord(source, record, "image path escapes the image root", f"{name!r} not under {root}")
    return path


def find_in_root(root: Path, name: str, source: object, record: object) -> Path:
    """Like :func:`resolve_in_root`; an absolute ``name`` (a path on its authors' machine, as Ground-R1's files
    hold) is matched by its longest tail that exists under ``root``."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") and len(parts) > 1:
        tails = ["/".join(parts[k:]) for k in range(1, len(parts))]
        found = next((t for t in tails if (root / t).is_file()), None)
        if found is None:
            raise BadRecord(source, record, "missing image", f"no tail of {name} under {root}")
        name = found
    return resolve_in_root(root, name, source, record)


def probe_bytes(data: bytes, source: object, record: object) -> ImageInfo:
    """Size and format of an encoded image; BadRecord if unreadable or truncated."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            info = _info(im)
    except _UNREADABLE as e:
        raise BadRecord(source, record, "unreadable image", f"{type(e).__name__}: {e}") from e
    tail = data.rstrip(b"\x00")[-16:]
    if _truncated(info, tail):
        raise BadRecord(source, record, "truncated image", f"{info.format} without its end marker")
    if info.width <= 0 or info.height <= 0:
        raise BadRecord(source, record, "unreadable image", f"size {info.width}x{info.height}")
    return info


def probe_file(path: Path, source: object, record: object) -> ImageInfo:
    """Like :func:`probe_bytes` for a file, reading only its header and its last bytes for JPEG/PNG."""
    if not path.is_file():
        raise BadRecord(source, record, "missing image", str(path))
    try:
        with Image.open(path) as im:
            info = _info(im)
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64))
            tail = f.read().rstrip(b"\x00")
    except _UNREADABLE as e:
        raise BadRecord(source, record, "unreadable image", f"{path}: {type(e).__name__}: {e}") from e
    if _truncated(info, tail):
        raise BadRecord(source, record, "truncated image", f"{path}: {info.format} without its end marker")
    return info


def _info(im: Image.Image) -> ImageInfo:
    info = ImageInfo(int(im.width), int(im.height), str(im.format), orientation(im))
    if info.format not in ("JPEG", "PNG"):
        im.load()
    return info


def _truncated(info: ImageInfo, tail: bytes) -> bool:
    """True when a JPEG or PNG stream lacks its end marker (the file was cut short)."""
    return (info.format == "JPEG" and not tail.endswith(_JPEG_END)) or (
        info.format == "PNG" and not tail.endswith(_PNG_END)
    )


class ImageStore:
    """Writes encoded images under one folder, named by content hash (deduplicated, each write atomic)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, data: bytes, info: ImageInfo) -> Path:
        name = hashlib.sha1(data).hexdigest() + _EXTENSIONS.get(info.format, ".img")
        path = (self.folder / name).resolve()
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path
