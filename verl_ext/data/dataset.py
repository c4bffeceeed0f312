"""Dataset hook: finishes rows at load time with the run's pixel bounds (docs/design.md, section 4).

Select it with ``data.custom_cls.path=pkg://verl_ext.data.dataset`` and ``data.custom_cls.name=GroundR1Dataset``.
For each row it reads ``data.min_pixels`` / ``data.max_pixels`` (required: the run's one source of the frame),
decodes every image the project's one way (:mod:`verl_ext.imaging`: orientation applied, alpha on white), puts
the bounds on every image so ``qwen_vl_utils`` resizes with them, computes the resized frame from the original
size, fills the prompt's ``{resized_width}``/``{resized_height}``, and hands the bounds and the frame to
the reward (``extra_info``) and the bounds to the zoom tool (its ``create_kwargs``). Null fields of the
shared parquet schema are dropped so consumers see only what the row has.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_ext.data.schema import ZOOM_TOOL
from verl_ext.geometry import Frame
from verl_ext.imaging import load_rgb
from verl_ext.prompts import fill_frame


class GroundR1Dataset(RLHFDataset):
    """``RLHFDataset`` whose rows carry the resized frame the model sees, computed with the run's pixel bounds."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1) -> None:
        self.min_pixels, self.max_pixels = pixel_bounds(config)
        _check_processor_bounds(processor, self.min_pixels, self.max_pixels)
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def frame(self, row: dict[str, Any], images: list[Image.Image]) -> Frame | None:
        """The first image's frame, from ``extra_info``'s original size (else the decoded image's size)."""
        extra = row.get("extra_info") or {}
        width, height = extra.get("image_width"), extra.get("image_height")
        if images and (width is None or height is None):
            width, height = images[0].size
        if width is None or height is None:
            return None
        if images and images[0].size != (width, height):
            raise ValueError(
                f"row {extra.get('index')} ({row.get('data_source')}): image is {images[0].size[0]}x"
                f"{images[0].size[1]} but extra_info says {width}x{height}"
            )
        return Frame.of(int(width), int(height), self.min_pixels, self.max_pixels)

    def _build_messages(self, example: dict, key: str) -> list:
        if example.get(self.image_key):
            example[self.image_key] = [_decoded(image) for image in example[self.image_key]]
        messages = super()._build_messages(example, key)
        items = [item for m in messages if isinstance(m["content"], list) for item in m["content"]]
        images = [item["image"] for item in items if item.get("type") == "image" and "image" in item]
        for item in items:
            if item.get("type") == "image":
                item["min_pixels"], item["max_pixels"] = self.min_pixels, self.max_pixels
        frame = self.frame(example, [im for im in images if isinstance(im, Image.Image)])
        if frame is not None:
            for m in messages:
                if isinstance(m["content"], str):
                    m["content"] = fill_frame(m["content"], frame.resized_width, frame.resized_height)
                    continue
                for item in m["content"]:
                    if item.get("type") == "text":
                        item["text"] = fill_frame(item["text"], frame.resized_width, frame.resized_height)
            example["_frame"] = frame
        return messages

    def __getitem__(self, item: int) -> dict:
        row = super().__getitem__(item)
        frame: Frame | None = row.pop("_frame", None)
        extra = _drop_nulls(row.get("extra_info") or {})
        extra["min_pixels"], extra["max_pixels"] = self.min_pixels, self.max_pixels
        if frame is not None:
            extra["resized_width"], extra["resized_height"] = frame.resized_width, frame.resized_height
        create = extra.get("tools_kwargs", {}).get(ZOOM_TOOL, {}).get("create_kwargs")
        if create is not None:
            create["min_pixels"], create["max_pixels"] = self.min_pixels, self.max_pixels
        row["extra_info"] = extra
        row["tools_kwargs"] = extra.get("tools_kwargs", {})
        return row


def pixel_bounds(data_config: Any) -> tuple[int, int]:
    """``(data.min_pixels, data.max_pixels)``: required positive integers, min <= max. No default is guessed."""
    values = []
    for name in ("min_pixels", "max_pixels"):
        value = data_config.get(name, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"data.{name} must be a positive integer (the run's pixel bounds, the one source of the frame the "
                f"model sees; the paper: min 3136, max 401408), got {value!r}"
            )
        values.append(value)
    if values[0] > values[1]:
        raise ValueError(f"data.min_pixels={values[0]} is larger than data.max_pixels={values[1]}")
    return values[0], values[1]


def _decoded(image: Any) -> Any:
    """A row's image decoded by :func:`verl_ext.imaging.load_rgb` (veRL would ``convert("RGB")`` it: alpha black)."""
    if isinstance(image, Image.Image):
        return load_rgb(image)
    if isinstance(image, dict) and (image.get("bytes") or image.get("path")):
        return load_rgb(image["bytes"] if image.get("bytes") else image["path"])
    return image


def _drop_nulls(value: Any) -> Any:
    """Copy of nested dicts without None values (the shared schema's absent fields)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def _check_processor_bounds(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """The processor must not resize again: its own bounds have to contain ours, or boxes drift off the frame."""
    size = getattr(getattr(processor, "image_processor", None), "size", None) or {}
    low, high = size.get("shortest_edge"), size.get("longest_edge")
    if (low is not None and min_pixels < low) or (high is not None and max_pixels > high):
        raise ValueError(
            f"data.min_pixels/max_pixels = {min_pixels}/{max_pixels} fall outside the processor's own bounds "
            f"{low}/{high}: the processor would resize the images again and the prompt's frame would be wrong"
        )
