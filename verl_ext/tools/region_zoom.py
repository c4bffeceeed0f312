"""Region-zoom tool for veRL's ``ToolAgentLoop``: crop the evidence box from the full-resolution original.

The model writes ``bbox_2d = [x1, y1, x2, y2]`` in absolute pixels of the image **as it sees it** (after
``smart_resize``). The tool maps that box to original pixels through :class:`verl_ext.geometry.Frame`,
clamps it, grows short sides to ``MIN_SIDE``, rejects aspect ratios ``>= MAX_ASPECT``, crops the
original and hands the crop back as a new image turn (DESIGN.md section 5). Cropping the resized copy
instead would add no detail on a 4K/8K image.

Every call, valid or not, appends a :class:`verl_ext.evidence.ZoomRecord` to
``agent_data.extra_fields[ZOOM_RECORDS_KEY]``; rewards and SRPO read the evidence scale from there.
Model output is hostile: bad arguments never raise, they produce a short error text the model can act
on and an invalid record.

veRL 0.9.1 creates and releases a tool instance around every call, so the decoded original lives on
the trajectory's ``agent_data`` (a private attribute, never serialised) and is decoded once per
trajectory, not once per call.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from PIL import Image
from qwen_vl_utils.vision_process import to_rgb
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from verl_ext.evidence import ZOOM_RECORDS_KEY, ZoomRecord
from verl_ext.geometry import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    MAX_ASPECT,
    MIN_SIDE,
    Frame,
    area,
    aspect_ratio,
    clamp,
    expand_to_min_side,
    is_finite_box,
)
from verl_ext.tools import TOOL_NAME

logger = logging.getLogger(__name__)

#: Default cap on zoom calls per trajectory (the paper: at most 5 rounds, i.e. 4 zooms and the answer).
DEFAULT_MAX_ZOOMS = 4
#: Attribute on ``AgentData`` holding the decoded original; private so it never reaches ``extra_fields``.
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
    """The trajectory's original image could not be located or decoded (a data or config problem)."""


@dataclass(frozen=True)
class _Original:
    """A decoded original and the frame the model sees it in."""

    image: Image.Image
    frame: Frame


@dataclass(frozen=True)
class _OriginalState:
    """What a trajectory's first call found: the original, or why there is none (so it is not retried)."""

    original: _Original | None
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
        min_pixels / max_pixels: the processor's bounds, used when a row's ``create_kwargs`` do not carry them.
        max_zooms: calls per trajectory; later calls are recorded invalid.

    Per row, ``extra_info.tools_kwargs.image_zoom_in_tool.create_kwargs`` holds ``image_path`` or
    ``image_bytes`` and optionally ``min_pixels``/``max_pixels`` (the frame the processor used).
    """

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema | None = None):
        super().__init__(config, tool_schema or TOOL_SCHEMA)
        if self.name != TOOL_NAME:
            raise ValueError(f"tool_schema names {self.name!r}; the zoom tool must be called {TOOL_NAME!r}")
        root = config.get("image_root")
        self.image_root = Path(root).resolve() if root else None
        self.min_pixels = _positive_int(config.get("min_pixels", DEFAULT_MIN_PIXELS), "min_pixels")
        self.max_pixels = _positive_int(config.get("max_pixels", DEFAULT_MAX_PIXELS), "max_pixels")
        self.max_zooms = _positive_int(config.get("max_zooms", DEFAULT_MAX_ZOOMS), "max_zooms")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"tool config: min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")
        self._create_kwargs: dict[str, dict[str, Any]] = {}

    async def create(
        self, instance_id: str | None = None, create_kwargs: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> tuple[str, ToolResponse]:
        instance_id = instance_id or uuid4().hex
        self._create_kwargs[instance_id] = dict(create_kwargs or {})
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
        box, label, reason = parse_arguments(parameters)

        if len(records) >= self.max_zooms:
            reason = f"zoom limit reached ({self.max_zooms} per answer)"
            text = f"Zoom refused: {reason}. Answer now inside <answer></answer>."
            return self._invalid(records, box, reason, text)

        state = await self._original_state(instance_id, agent_data)
        if state.original is None:
            return self._invalid(records, box, state.error, f"Zoom failed: the image is unavailable ({state.error}).")
        frame = state.original.frame

        if reason:
            return self._invalid(records, box, reason, _retry_text(reason, frame))
        reason = check_model_box(box, frame)
        if reason:
            return self._invalid(records, box, reason, _retry_text(reason, frame))

        loop = asyncio.get_running_loop()
        crop = await loop.run_in_executor(None, crop_original, state.original.image, frame, box)
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
        what = f" ({label})" if label else ""
        text = (
            f"Zoomed in on [{_fmt(box)}] of the {frame.resized_width}x{frame.resized_height} image{what}. "
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
        """The trajectory's decoded original, decoding it on the first call only."""
        state = getattr(agent_data, _STATE_ATTR, None)
        if state is None:
            create_kwargs = self._create_kwargs.get(instance_id, {})
            loop = asyncio.get_running_loop()
            try:
                original = await loop.run_in_executor(None, self.load_original, create_kwargs)
                state = _OriginalState(original, "")
            except OriginalUnavailable as e:
                logger.error("%s: %s", TOOL_NAME, e)
                state = _OriginalState(None, str(e))
            setattr(agent_data, _STATE_ATTR, state)
        return state

    def load_original(self, create_kwargs: Mapping[str, Any]) -> _Original:
        """Decode the row's original (``image_path`` or ``image_bytes``) and compute its frame."""
        min_pixels = _positive_int(create_kwargs.get("min_pixels", self.min_pixels), "min_pixels", OriginalUnavailable)
        max_pixels = _positive_int(create_kwargs.get("max_pixels", self.max_pixels), "max_pixels", OriginalUnavailable)
        if "image_bytes" in create_kwargs and create_kwargs["image_bytes"] is not None:
            data = create_kwargs["image_bytes"]
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise OriginalUnavailable(f"image_bytes must be bytes, got {type(data).__name__}")
            source: Any = io.BytesIO(bytes(data))
            name = "image_bytes"
        elif create_kwargs.get("image_path"):
            source = name = self.resolve_path(create_kwargs["image_path"])
        else:
            raise OriginalUnavailable("tools_kwargs carry neither image_path nor image_bytes")
        try:
            with Image.open(source) as raw:
                image = to_rgb(raw)
            frame = Frame.of(image.width, image.height, min_pixels, max_pixels)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise OriginalUnavailable(f"cannot decode {name}: {e}") from e
        return _Original(image, frame)

    def resolve_path(self, image_path: Any) -> str:
        """Absolute path of ``image_path``; relative paths resolve against ``image_root`` and must stay in it."""
        if not isinstance(image_path, (str, os.PathLike)):
            raise OriginalUnavailable(f"image_path must be a string, got {type(image_path).__name__}")
        path = Path(image_path)
        if self.image_root is None:
            if not path.is_absolute():
                raise OriginalUnavailable(f"relative image_path {str(path)!r} needs image_root in the tool config")
            return str(path)
        resolved = (self.image_root / path).resolve()
        if not resolved.is_relative_to(self.image_root):
            raise OriginalUnavailable(f"image_path {str(path)!r} escapes image_root {str(self.image_root)!r}")
        return str(resolved)


def parse_arguments(parameters: Any) -> tuple[tuple[float, float, float, float] | None, str, str]:
    """``(box, label, reason)`` from the call's arguments; ``reason`` is empty when ``box`` is a usable box."""
    if not isinstance(parameters, Mapping):
        return None, "", f"arguments must be an object with bbox_2d, got {_kind(parameters)}"
    label = parameters.get("label")
    label = label.strip()[:100] if isinstance(label, str) else ""
    if "bbox_2d" not in parameters:
        return None, label, "missing bbox_2d"
    raw = parameters["bbox_2d"]
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        return None, label, f"bbox_2d must be a list of 4 numbers, got {_kind(raw)}"
    if len(raw) != 4:
        return None, label, f"bbox_2d must have 4 numbers, got {len(raw)} items"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return None, label, "bbox_2d must hold only numbers"
    try:
        box = tuple(float(v) for v in raw)
    except OverflowError:  # an integer too large for a float
        box = (math.inf,) * 4
    if not is_finite_box(box):
        return None, label, "bbox_2d holds a non-finite number (NaN or infinity)"
    return box, label, ""


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
        return f"a string {value[:40]!r}"
    return "null" if value is None else f"a {type(value).__name__}"


def _fmt(box: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in box)
