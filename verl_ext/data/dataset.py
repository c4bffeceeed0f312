"""Dataset hook: finishes rows at load time with the run's pixel bounds (docs/design.md, section 4).

Select it with ``data.custom_cls.path=pkg://verl_ext.data.dataset`` and ``data.custom_cls.name=GroundR1Dataset``.
For each row it reads ``data.min_pixels`` / ``data.max_pixels`` (required: the run's one source of the frame),
decodes every image the project's one way (:mod:`verl_ext.imaging`: orientation applied, alpha on white), puts
the bounds on every image so ``qwen_vl_utils`` resizes with them, computes the resized frame from the original
size, fills the prompt's ``{resized_width}``/``{resized_height}``, and hands the bounds and the frame to
the reward (``extra_info``) and the bounds to the zoom tool (its ``create_kwargs``). Null fields of the
shared parquet schema are dropped so consumers see only what the row has.

Before veRL reads the files, every text of every row is searched for the chat template's tokens
(:mod:`verl_ext.special_tokens`; one vectorised pass per file): files written before data prep refused them
stop the run with the file and row named, instead of reaching the processor as control tokens (where
``<|image_pad|>`` fails the sample, and veRL's overlong-prompt filter would drop it without a word).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_ext.data.rows import LOCATION_FIELDS, row_template_tokens
from verl_ext.data.schema import ZOOM_TOOL
from verl_ext.geometry import Frame
from verl_ext.imaging import load_rgb
from verl_ext.prompts import fill_frame
from verl_ext.special_tokens import SYSTEM_TURN_TOKENS, pattern

#: Rows read at a time by the token search.
_BATCH = 8192
#: The token search in Arrow, and the one for a system turn (it may teach the hermes zoom call).
_PATTERN, _SYSTEM_PATTERN = pattern(), pattern(SYSTEM_TURN_TOKENS)
#: Rows named one by one in the error before only their count is given.
_SHOW_ROWS = 5


class GroundR1Dataset(RLHFDataset):
    """``RLHFDataset`` whose rows carry the resized frame the model sees, computed with the run's pixel bounds."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1) -> None:
        self.min_pixels, self.max_pixels = pixel_bounds(config)
        _check_processor_bounds(processor, self.min_pixels, self.max_pixels)
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    def _read_files_and_tokenize(self) -> None:
        """veRL's reading of the files, after each file's rows are checked for chat-template tokens."""
        for original, local in zip(self.original_data_files, self.data_files, strict=True):
            check_template_tokens(str(local), name=str(original))
        super()._read_files_and_tokenize()

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


class TemplateTokenError(ValueError):
    """A data file whose rows spell chat-template tokens in their text (written before data prep refused them)."""


def check_template_tokens(path: str, name: str | None = None) -> None:
    """Raise :class:`TemplateTokenError` naming the file and rows whose text spells a chat-template token.

    Reads the file's columns except the image ones in batches; the search runs in Arrow, and only rows it
    flags are read into Python to name their field (and to let a system turn keep the hermes tags).
    """
    name = name or path
    bad: list[tuple[int, dict[str, Any], list[tuple[str, list[str]]]]] = []
    count = 0
    start = 0
    for batch in _batches(path):
        flagged = sorted({int(k) for k in _flagged(batch, np.arange(batch.num_rows))})
        for k, row in zip(flagged, batch.take(pa.array(flagged, pa.int64())).to_pylist(), strict=True):
            found = row_template_tokens(row)
            if found:
                count += 1
                if len(bad) < _SHOW_ROWS:
                    bad.append((start + k, row, found))
        start += batch.num_rows
    if not bad:
        return
    lines = []
    for number, row, found in bad:
        extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
        fields = "; ".join(f"{field} holds {', '.join(tokens)}" for field, tokens in found)
        lines.append(
            f"  row {number} (data_source {row.get('data_source')!r}, extra_info.index {extra.get('index')}): {fields}"
        )
    more = f"\n  ... and {count - len(bad)} more rows" if count > len(bad) else ""
    raise TemplateTokenError(
        f"{name}: {count} rows spell chat-template tokens in their text, which the tokenizer would read as "
        "control tokens (an image slot without an image, a forged turn); rows counted from 0:\n"
        + "\n".join(lines)
        + more
        + "\nConvert the data set again with this version's data_prep scripts: they refuse such records "
        "(and count them under --skip-bad)."
    )


def _batches(path: str) -> Iterator[pa.RecordBatch]:
    """The file's record batches without its image columns (parquet streamed; JSON through ``datasets``' cache)."""
    if path.endswith(".parquet"):
        f = pq.ParquetFile(path)
        columns = [c for c in f.schema_arrow.names if c not in LOCATION_FIELDS]
        yield from f.iter_batches(batch_size=_BATCH, columns=columns)
        return
    table = datasets.load_dataset("json", data_files=path)["train"].data.table
    yield from table.drop_columns([c for c in LOCATION_FIELDS if c in table.column_names]).to_batches(_BATCH)


def _flagged(array: pa.Array | pa.RecordBatch, rows: np.ndarray) -> Iterator[int]:
    """Row numbers whose strings under ``array`` (``rows[k]`` is the row of element ``k``) may spell a token."""
    if isinstance(array, pa.RecordBatch) or pa.types.is_struct(array.type):
        names = array.schema.names if isinstance(array, pa.RecordBatch) else [f.name for f in array.type]
        children = dict(
            zip(names, array.columns if isinstance(array, pa.RecordBatch) else array.flatten(), strict=True)
        )
        role, content = children.get("role"), children.get("content")
        if _is_text(role) and _is_text(content):  # a chat message: its role decides what it may hold
            system = pc.fill_null(pc.equal(role, "system"), False)
            hits = pc.if_else(system, _matches(content, _SYSTEM_PATTERN), _matches(content, _PATTERN))
            yield from rows[np.asarray(hits, dtype=bool)]
            children.pop("content")
        for child_name, child in children.items():
            if child_name not in LOCATION_FIELDS:
                yield from _flagged(child, rows)
    elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        parents = np.asarray(pc.list_parent_indices(array))
        yield from _flagged(array.flatten(), rows[parents])
    elif _is_text(array):
        yield from rows[np.asarray(_matches(array, _PATTERN), dtype=bool)]


def _is_text(array: pa.Array | None) -> bool:
    return array is not None and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def _matches(strings: pa.Array, regex: str) -> pa.Array:
    """Per string: whether it holds a match of ``regex`` (null strings hold none)."""
    return pc.fill_null(pc.match_substring_regex(strings, regex), False)


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
