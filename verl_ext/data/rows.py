"""Building and checking rows: prompts from ``verl_ext.prompts``, image entries, tool kwargs, answer types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_ext import prompts
from verl_ext.answers import ANSWER_TYPES
from verl_ext.data.images import ImageInfo, ImageStore
from verl_ext.data.schema import EXTRA_INFO_FIELDS, SINGLE_TURN_AGENT, TOOL_AGENT, ZOOM_TOOL
from verl_ext.imaging import orient_box, oriented_size
from verl_ext.special_tokens import SYSTEM_TURN_TOKENS, template_tokens_in

#: Row fields that say where images are (the media columns, the zoom tool's kwargs), not text for a prompt.
LOCATION_FIELDS = ("images", "videos", "audios", "tools_kwargs")

#: Zoom-call protocol named in the system prompt; the recipe's ``multi_turn.format`` must match it.
SYSTEM_PROMPTS = {"box": prompts.SYSTEM_BOX, "hermes": prompts.SYSTEM_HERMES}

_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s*(.+?)\s*$")


@dataclass(frozen=True)
class ImageRef:
    """The original image of a row: an absolute path and/or the encoded bytes (when they are embedded).

    ``width``/``height`` are the *oriented* size (EXIF orientation applied, as every decoder of the project
    shows the image); annotation boxes, given in the stored file's frame, go through :meth:`orient`.
    """

    path: Path | None
    width: int
    height: int
    data: bytes | None = None
    orientation: int = 1

    @classmethod
    def of(cls, path: Path | None, info: ImageInfo, data: bytes | None = None) -> ImageRef:
        width, height = oriented_size(info.width, info.height, info.orientation)
        return cls(path, width, height, data, info.orientation)

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the file as stored, the frame annotation boxes are given in."""
        return oriented_size(self.width, self.height, self.orientation)

    def orient(self, box: list[float]) -> list[float]:
        """``[x1, y1, x2, y2]`` in the stored file's pixels mapped into the oriented frame."""
        width, height = self.stored_size
        return [float(v) for v in orient_box(tuple(box), self.orientation, width, height)]

    def embedded(self) -> ImageRef:
        """The same image with its bytes read in (for ``--embed-images``)."""
        if self.data is not None or self.path is None:
            return self
        return ImageRef(self.path, self.width, self.height, self.path.read_bytes(), self.orientation)


def stored_image(data: bytes, info: ImageInfo, embed: bool, store: ImageStore) -> ImageRef:
    """An image that arrived as bytes (base64 TSV, DeepEyes parquet): embedded, or written once under ``store``."""
    if embed:
        return ImageRef.of(None, info, data)
    return ImageRef.of(store.put(data, info), info)


def image_columns(image: ImageRef) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``images`` entry and the zoom tool's ``tools_kwargs`` for one image (path or embedded bytes)."""
    path = None if image.path is None else str(image.path)
    entry = {"bytes": image.data, "path": path}
    create = {"image_bytes": image.data} if image.data is not None else {"image_path": path}
    return [entry], {ZOOM_TOOL: {"create_kwargs": create}}


def build_row(
    *,
    data_source: str,
    messages: list[dict[str, str]],
    image: ImageRef,
    ability: str,
    ground_truth: Any,
    extra_info: dict[str, Any],
    use_tool: bool,
) -> dict[str, Any]:
    """One parquet row; every row carries the zoom tool's kwargs, ``agent_name`` says whether the loop uses it."""
    images, tools_kwargs = image_columns(image)
    extra = {
        **extra_info,
        "image_width": image.width,
        "image_height": image.height,
        "need_tools_kwargs": True,
        "tools_kwargs": tools_kwargs,
    }
    row = {
        "data_source": data_source,
        "prompt": messages,
        "images": images,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra,
        "agent_name": TOOL_AGENT if use_tool else SINGLE_TURN_AGENT,
    }
    return row


def vqa_row(
    *,
    data_source: str,
    question: str,
    options: list[str] | None,
    answer: str,
    answer_type: str,
    image: ImageRef,
    protocol: str | None,
    extra_info: dict[str, Any],
    ability: str = "vqa",
) -> dict[str, Any]:
    """A VQA row: the question (with lettered options) and its answer; ``protocol`` None means no zoom tool."""
    extra = {**extra_info, "question": question, "answer": answer, "options": options or None}
    return build_row(
        data_source=data_source,
        messages=vqa_messages(question, options, protocol),
        image=image,
        ability=ability,
        ground_truth=answer,
        extra_info={**extra, "answer_type": answer_type},
        use_tool=protocol is not None,
    )


def validate_row(row: dict[str, Any]) -> None:
    """Invariants every converter must keep (a failure here is a converter bug, not bad input)."""
    extra = row["extra_info"]
    unknown = set(extra) - EXTRA_INFO_FIELDS
    if unknown:
        raise ValueError(f"extra_info keys not in the schema: {sorted(unknown)}")
    for key in ("index", "split", "image_width", "image_height"):
        if extra.get(key) is None:
            raise ValueError(f"extra_info.{key} is required")
    slots = sum(m["content"].count("<image>") for m in row["prompt"])
    if slots != len(row["images"]):
        raise ValueError(f"prompt has {slots} <image> slots for {len(row['images'])} images")
    if extra.get("answer_type") is not None and extra["answer_type"] not in ANSWER_TYPES:
        raise ValueError(f"answer_type {extra['answer_type']!r} not in {ANSWER_TYPES}")
    if row["reward_model"]["ground_truth"] is None:
        raise ValueError("reward_model.ground_truth is required")
    found = row_template_tokens(row)
    if found:
        raise ValueError(f"chat-template tokens in the row: {found}")


def row_template_tokens(row: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(field, tokens)`` for every text of a row that spells a chat-template token.

    Every string is text for the prompt or the reward except where images are (``images``, the zoom tool's
    kwargs); a system turn may hold the hermes zoom call's tags, which :data:`verl_ext.prompts.SYSTEM_HERMES`
    teaches. Used by the converters (a hit is a converter bug) and by the dataset hook (rows of older versions).
    """
    found: list[tuple[str, list[str]]] = []

    def walk(value: Any, field: str, allowed: tuple[str, ...] = ()) -> None:
        if isinstance(value, str):
            tokens = template_tokens_in(value, allowed)
            if tokens:
                found.append((field, tokens))
        elif isinstance(value, dict):
            allowed = SYSTEM_TURN_TOKENS if value.get("role") == "system" else allowed
            for key, item in value.items():
                if key not in LOCATION_FIELDS:
                    walk(item, f"{field}.{key}" if field else key, allowed)
        elif isinstance(value, (list, tuple)):
            for k, item in enumerate(value):
                walk(item, f"{field}[{k}]", allowed)

    walk(row, "")
    return found


def vqa_messages(question: str, options: list[str] | None, protocol: str | None) -> list[dict[str, str]]:
    """A system turn (the zoom protocol's, or the plain turn format without a tool), then the image and question."""
    if options:
        user = prompts.fill(prompts.MULTIPLE_CHOICE_USER, question=question, options=prompts.format_options(options))
    else:
        user = prompts.fill(prompts.VQA_USER, question=question)
    system = prompts.SYSTEM_NO_TOOL if protocol is None else SYSTEM_PROMPTS[protocol]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def grounding_messages(expression: str, protocol: str | None) -> list[dict[str, str]]:
    """The grounding instruction; with a zoom protocol, a system turn that offers the zoom too."""
    user = {"role": "user", "content": prompts.fill(prompts.GROUNDING_USER, expression=expression)}
    return [user] if protocol is None else [{"role": "system", "content": SYSTEM_PROMPTS[protocol]}, user]


def split_options(question: str) -> tuple[str, list[str]]:
    """Split trailing option lines (``A. red`` / ``(B) blue``, consecutive from A) off a question."""
    lines = question.rstrip().split("\n")
    start = len(lines)
    while start > 0 and _OPTION_LINE.match(lines[start - 1]):
        start -= 1
    block = [_OPTION_LINE.match(line) for line in lines[start:]]
    letters = [m.group(1) for m in block if m]
    stem = "\n".join(lines[:start]).strip()
    if len(letters) < 2 or letters != [chr(ord("A") + k) for k in range(len(letters))] or not stem:
        return question.strip(), []
    return stem, [m.group(2) for m in block if m]
