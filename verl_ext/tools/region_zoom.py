"""Region-zoom tool for veRL's ``ToolAgentLoop``: crop the evidence box from the full-resolution original.

The model writes ``bbox_2d = [x1, y1, x2, y2]`` in absolute pixels of the image **as it sees it** (after
``smart_resize``). The tool maps that box to original pixels through :class:`verl_ext.geometry.Frame`,
clamps it, grows short sides to ``MIN_SIDE``, rejects aspect ratios ``>= MAX_ASPECT``, crops the
original and hands the crop back as a new image turn (docs/design.md, section 4). Cropping the resized copy
instead would add no detail on a 4K/8K image.

Every call, valid or not, appends a :class:`verl_ext.evidence.ZoomRecord` to
``agent_data.extra_fields[ZOOM_RECORDS_KEY]``; rewards and SRPO read the evidence scale from there.

Model output and row data are hostile: ``execute`` never raises. A bad argument, a missing or unreadable image
(a NUL in the path, a FIFO, a decompression bomb), pixel bounds missing from the row or inconsistent: each gives
an invalid record and a short message, within ``decode_timeout_s``. **Nothing the model wrote is echoed back**: the
tool turn is tokenized with special tokens, so echoed text could spell ``<|image_pad|>`` (the image-token count
then disagrees with the images) or forge ``<|im_end|><|im_start|>`` turn markers. Messages name the kind and
size of a bad argument, never its text, and the optional ``label`` is accepted and ignored.

The original is decoded the project's one way (:func:`verl_ext.imaging.load_rgb`: EXIF orientation applied,
alpha on white), so the crop is cut from the picture the model saw. Pixel bounds come from the row's
``create_kwargs`` only (the dataset hook writes the run's ``data.min_pixels``/``max_pixels`` there); the tool never
guesses a frame. Decoded originals are shared between the trajectories of a worker
(:class:`verl_ext.tools.originals.OriginalCache`); each trajectory holds its copy from the first zoom until the
agent loop calls :meth:`RegionZoomTool.release_trajectory`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import numbers
import os
import stat
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from PIL import Image
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from verl_ext.evidence import ZOOM_RECORDS_KEY, ZoomRecord
from verl_ext.geometry import MAX_ASPECT, MIN_SIDE, Frame, area, aspect_ratio, clamp, expand_to_min_side, is_finite_box
from verl_ext.imaging import load_rgb
from verl_ext.tools import TOOL_NAME
from verl_ext.tools.originals import Held, OriginalCache

logger = logging.getLogger(__name__)

#: Default cap on zoom calls per trajectory (the paper: at most 5 rounds, i.e. 4 zooms and the answer).
DEFAULT_MAX_ZOOMS = 4
#: Default budget for decoded originals shared per worker (an 8K RGB original is about 100 MB).
DEFAULT_CACHE_MB = 1024
#: Default bound on locating and decoding one original.
DEFAULT_DECODE_TIMEOUT_S = 60.0
#: Attribute on ``AgentData`` holding the trajectory's original; private so it never reaches ``extra_fields``.
_STATE_ATTR = "_ground_r1_zoom_original"

TOOL_SCHEMA = OpenAIFunctionToolSchema.model_validate(
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": (
                "Zoom in on a region of the image. The region is returned as a new image at the original, "
                "full resolution."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "bbox_2d": {
                        "type": "array",
                        "description": (
                            "The region as [x1, y1, x2, y2]: absolute pixel coordinates in the image as you see "
                            "it, with x1 < x2 and y1 < y2."
                        ),
                    },
                    "label": {"type": "string", "description": "Optional name of what the region shows."},
                },
                "required": ["bbox_2d"],
            },
        },
    }
)


class OriginalUnavailable(Exception):
    """The trajectory's original image or its frame cannot be had (a row data or config problem)."""


@dataclass(frozen=True)
class _OriginalState:
    """What a trajectory's first call found: its original and frame, or why there is none (not retried)."""

    held: Held | None
    frame: Frame | None
    error: str


@dataclass(frozen=True)
class _Crop:
    """A validated zoom: pixel box in the original and the cropped image."""

    box: tuple[int, int, int, int]
    relative_area: float
    image: Image.Image


class RegionZoomTool(BaseTool):
    """``image_zoom_in_tool``: crops ``bbox_2d`` (model frame) from the trajectory's full-resolution original.

    Tool config (``config:`` in the tool YAML):
        image_root: folder relative ``image_path`` values resolve against; paths escaping it are refused.
        max_zooms: calls per trajectory; later calls are recorded invalid.
        cache_mb: budget for decoded originals shared by the worker's trajectories.
        decode_timeout_s: bound on locating and decoding one original.

    Per row, ``extra_info.tools_kwargs.image_zoom_in_tool.create_kwargs`` holds ``image_path`` or ``image_bytes``
    and ``min_pixels``/``max_pixels`` (the run's processor bounds, written by the dataset hook; required).
    """

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None = None):
        super().__init__(config, tool_schema or TOOL_SCHEMA)
        if self.name != TOOL_NAME:
            raise ValueError(f"tool_schema names {self.name!r}; the zoom tool must be called {TOOL_NAME!r}")
        for key in ("min_pixels", "max_pixels"):
            if key in config:
                raise ValueError(f"tool config: {key} is not a tool setting; rows carry the run's data.{key}")
        root = config.get("image_root")
        self.image_root = Path(root).resolve() if root else None
        self.max_zooms = _positive_int(config.get("max_zooms", DEFAULT_MAX_ZOOMS), "max_zooms")
        cache_mb = _positive_int(config.get("cache_mb", DEFAULT_CACHE_MB), "cache_mb")
        timeout = config.get("decode_timeout_s", DEFAULT_DECODE_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
            raise ValueError(f"decode_timeout_s must be a positive number, got {timeout!r}")
        self.originals = OriginalCache(cache_mb * 2**20, float(timeout))
        self._create_kwargs: dict[str, dict[str, Any]] = {}

    async def create(
        self, instance_id: str | None = None, create_kwargs: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> tuple[str, ToolResponse]:
        instance_id = instance_id or uuid4().hex
        self._create_kwargs[instance_id] = dict(create_kwargs) if isinstance(create_kwargs, Mapping) else {}
        return instance_id, ToolResponse()

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._create_kwargs.pop(instance_id, None)

    async def execute(
        self, instance_id: str, parameters: Any, agent_data: Any = None, **kwargs: Any
    ) -> tuple[ToolResponse, float, dict]:
        """Zoom once. ``agent_data`` is the trajectory's state (``ToolAgentLoop`` always passes it)."""
        if agent_data is None:
            raise TypeError(f"{TOOL_NAME} needs the trajectory's agent_data (run it inside ToolAgentLoop)")
        records: list[ZoomRecord] = agent_data.extra_fields.setdefault(ZOOM_RECORDS_KEY, [])
        try:
            return await self._zoom(instance_id, parameters, agent_data, records)
        except Exception as e:  # never let one call stop the rollout; the record keeps num_zooms exact
            logger.exception("%s: unexpected error", TOOL_NAME)
            reason = f"internal error ({type(e).__name__})"
            return self._invalid(records, None, reason, f"Zoom failed: {reason}.")

    async def _zoom(
        self, instance_id: str, parameters: Any, agent_data: Any, records: list[ZoomRecord]
    ) -> tuple[ToolResponse, float, dict]:
        box, reason = parse_arguments(parameters)
        if len(records) >= self.max_zooms:
            reason = f"zoom limit reached ({self.max_zooms} per answer)"
            text = f"Zoom refused: {reason}. Answer now inside <answer></answer>."
            return self._invalid(records, box, reason, text)

        state = await self._original_state(instance_id, agent_data)
        if state.held is None:
            return self._invalid(records, box, state.error, f"Zoom failed: the image is unavailable ({state.error}).")
        frame = state.frame

        if reason:
            return self._invalid(records, box, reason, _retry_text(reason, frame))
        reason = check_model_box(box, frame)
        if reason:
            return self._invalid(records, box, reason, _retry_text(reason, frame))

        loop = asyncio.get_running_loop()
        crop = await loop.run_in_executor(None, crop_original, state.held.image, frame, box)
        if isinstance(crop, str):
            return self._invalid(records, box, crop, _retry_text(crop, frame))

        records.append(
            ZoomRecord(
                bbox_model=list(box),
                bbox_original=[float(v) for v in crop.box],
                relative_area=crop.relative_area,
                valid=True,
                reason="",
            )
        )
        x1, y1, x2, y2 = crop.box
        text = (
            f"Zoomed in on [{_fmt(box)}] of the {frame.resized_width}x{frame.resized_height} image. "
            f"The new image is that region at full resolution: {x2 - x1}x{y2 - y1} pixels of the original."
        )
        return ToolResponse(image=[crop.image], text=text), 0.0, {"valid": True, "relative_area": crop.relative_area}

    def _invalid(
        self, records: list[ZoomRecord], box: tuple[float, ...] | None, reason: str, text: str
    ) -> tuple[ToolResponse, float, dict]:
        records.append(
            ZoomRecord(
                bbox_model=list(box) if box is not None else None,
                bbox_original=None,
                relative_area=None,
                valid=False,
                reason=reason,
            )
        )
        return ToolResponse(text=text), 0.0, {"valid": False}

    async def _original_state(self, instance_id: str, agent_data: Any) -> _OriginalState:
        """The trajectory's original and frame, found on its first call only."""
        state = getattr(agent_data, _STATE_ATTR, None)
        if state is None:
            try:
                state = await self._load_state(self._create_kwargs.get(instance_id, {}))
            except OriginalUnavailable as e:
                logger.error("%s: %s", TOOL_NAME, e)
                state = _OriginalState(None, None, str(e))
            setattr(agent_data, _STATE_ATTR, state)
        return state

    async def _load_state(self, create_kwargs: Mapping[str, Any]) -> _OriginalState:
        min_pixels, max_pixels = row_pixel_bounds(create_kwargs)
        key, decode = self.image_source(create_kwargs)
        try:
            held = await self.originals.acquire(key, decode)
        except TimeoutError as e:
            raise OriginalUnavailable(f"decoding took longer than {self.originals.timeout_s:g} s") from e
        except OriginalUnavailable:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise OriginalUnavailable(f"cannot decode the image: {type(e).__name__}: {e}") from e
        try:
            frame = Frame.of(held.image.width, held.image.height, min_pixels, max_pixels)
        except ValueError as e:
            self.originals.release(held)
            raise OriginalUnavailable(str(e)) from e
        return _OriginalState(held, frame, "")

    def image_source(self, create_kwargs: Mapping[str, Any]) -> tuple[Hashable, Any]:
        """``(identity key, decode function)`` for the row's ``image_bytes`` or ``image_path``."""
        data = create_kwargs.get("image_bytes")
        if data is not None:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise OriginalUnavailable(f"image_bytes must be bytes, got {type(data).__name__}")
            data = bytes(data)
            return ("bytes", hashlib.blake2b(data, digest_size=16).hexdigest()), lambda: load_rgb(data)
        if not create_kwargs.get("image_path"):
            raise OriginalUnavailable("tools_kwargs carry neither image_path nor image_bytes")
        path = self.resolve_path(create_kwargs["image_path"])
        try:
            info = os.stat(path)
        except OSError as e:
            raise OriginalUnavailable(f"cannot read {path!r}: {e.strerror or type(e).__name__}") from e
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block the reader forever
            raise OriginalUnavailable(f"{path!r} is not a regular file")
        return ("path", path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns), lambda: load_rgb(path)

    def resolve_path(self, image_path: Any) -> str:
        """Absolute path of ``image_path``; relative paths resolve against ``image_root`` and must stay in it."""
        if not isinstance(image_path, (str, os.PathLike)):
            raise OriginalUnavailable(f"image_path must be a string, got {type(image_path).__name__}")
        if "\x00" in os.fspath(image_path):
            raise OriginalUnavailable("image_path contains a NUL character")
        path = Path(image_path)
        if self.image_root is None:
            if not path.is_absolute():
                raise OriginalUnavailable(f"relative image_path {str(path)!r} needs image_root in the tool config")
            return str(path)
        try:
            resolved = (self.image_root / path).resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
            raise OriginalUnavailable(f"cannot resolve image_path {str(path)!r}: {e}") from e
        if not resolved.is_relative_to(self.image_root):
            raise OriginalUnavailable(f"image_path {str(path)!r} escapes image_root {str(self.image_root)!r}")
        return str(resolved)

    def share_trajectory(self, source: Any, target: Any) -> None:
        """Give ``target`` (a branch adopting ``source``'s trajectory) its own reference to the same original."""
        state = getattr(source, _STATE_ATTR, None)
        if state is not None and state.held is not None:
            state = _OriginalState(self.originals.share(state.held), state.frame, "")
        setattr(target, _STATE_ATTR, state)

    def release_trajectory(self, agent_data: Any) -> None:
        """The trajectory is over: give back its original (the agent loop calls this once per rollout)."""
        state = getattr(agent_data, _STATE_ATTR, None)
        if state is not None and state.held is not None:
            self.originals.release(state.held)


def row_pixel_bounds(create_kwargs: Mapping[str, Any]) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` from the row: the frame the processor showed the model; never guessed."""
    bounds = []
    for key in ("min_pixels", "max_pixels"):
        if create_kwargs.get(key) is None:
            raise OriginalUnavailable(f"the row's create_kwargs lack {key} (the dataset hook writes the run's bounds)")
        bounds.append(_positive_int(create_kwargs[key], key, OriginalUnavailable))
    if bounds[0] > bounds[1]:
        raise OriginalUnavailable(f"the row's min_pixels {bounds[0]} exceed its max_pixels {bounds[1]}")
    return bounds[0], bounds[1]


def parse_arguments(parameters: Any) -> tuple[tuple[float, float, float, float] | None, str]:
    """``(box, reason)`` from the call's arguments; ``reason`` is empty when ``box`` is a usable box.

    Reasons describe the arguments (kind, length) without quoting them: see the module doc.
    """
    if not isinstance(parameters, Mapping):
        return None, f"arguments must be an object with bbox_2d, got {_kind(parameters)}"
    if "bbox_2d" not in parameters:
        return None, "missing bbox_2d"
    raw = parameters["bbox_2d"]
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        return None, f"bbox_2d must be a list of 4 numbers, got {_kind(raw)}"
    if len(raw) != 4:
        return None, f"bbox_2d must have 4 numbers, got {len(raw)} items"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return None, "bbox_2d must hold only numbers"
    try:
        box = tuple(float(v) for v in raw)
    except OverflowError:  # an integer too large for a float
        box = (math.inf,) * 4
    if not is_finite_box(box):
        return None, "bbox_2d holds a non-finite number (NaN or infinity)"
    return box, ""


def check_model_box(box: tuple[float, float, float, float], frame: Frame) -> str:
    """Why ``box`` (model frame) cannot be zoomed, or ``""``."""
    x1, y1, x2, y2 = box
    if x1 >= x2 or y1 >= y2:
        return "empty or reversed box: need x1 < x2 and y1 < y2"
    if area(clamp(box, frame.resized_width, frame.resized_height)) <= 0:
        return "box lies outside the image"
    return ""


def crop_original(image: Image.Image, frame: Frame, box: tuple[float, float, float, float]) -> _Crop | str:
    """Map ``box`` to original pixels, clamp, grow to ``MIN_SIDE``, check the aspect ratio and crop.

    The pixel box is the smallest whole-pixel box containing the mapped one. Returns the reason as a
    string when the region cannot be zoomed.
    """
    w, h = frame.width, frame.height
    mapped = expand_to_min_side(clamp(frame.to_original(box), w, h), w, h, MIN_SIDE)
    x1, y1 = max(0, math.floor(mapped[0])), max(0, math.floor(mapped[1]))
    x2, y2 = min(w, math.ceil(mapped[2])), min(h, math.ceil(mapped[3]))
    pixel_box = (x1, y1, x2, y2)
    if aspect_ratio(pixel_box) >= MAX_ASPECT:
        return f"region too thin (aspect ratio must stay below {MAX_ASPECT:g})"
    return _Crop(pixel_box, area(pixel_box) / (w * h), image.crop(pixel_box))


def _retry_text(reason: str, frame: Frame) -> str:
    return (
        f"Zoom failed: {reason}. Call it again with bbox_2d = [x1, y1, x2, y2], four numbers with "
        f"0 <= x1 < x2 <= {frame.resized_width} and 0 <= y1 < y2 <= {frame.resized_height}."
    )


def _positive_int(value: Any, name: str, error: type[Exception] = ValueError) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "null" if value is None else f"a {type(value).__name__}"


def _fmt(box: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in box)
