"""Trajectory records (one per question and sample) and the resumable JSONL file that holds them.

A record carries what the metrics need and what a reader checks a number by: the question, every turn's
text, each zoom's box in the model's frame and in original pixels, the final answer (for grounding also its
box in both frames), the reward's outputs (score, acc, format, IoU, evidence scale) and, for a question that
could not be evaluated, the reason (``failed``), in which case it is never correct.

The file is appended one question at a time with a single ``write`` of complete lines and flushed, so an
interrupted run loses at most the questions in flight; a trailing partial line (a crash inside a write) is
cut off when the file is opened again.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from verl_ext.data_sources import GROUNDING
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.geometry import Frame, clamp, is_finite_box
from verl_ext.reward.grounding import parse_box
from verl_ext.reward.text import final_answer
from verl_ext.reward_keys import IOU, IOU_NOT_APPLICABLE, REWARD_KEYS

#: Row fields copied into every record (from the dataset row's ``extra_info``).
ROW_FIELDS = ("split", "category", "cycle_category", "source_id", "question", "options", "expression")
#: The chat template's role words around a tool turn once special tokens are gone ("user\n<tool_response>...").
_TOOL_ROLES = re.compile(r"^\s*user\s*|\s*assistant\s*$")


def question_key(file: str, position: int) -> str:
    """Stable id of a question: its parquet file and position in it."""
    return f"{Path(file).name}#{position}"


def base_record(file: str, position: int, sample: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record has whether or not the question could be evaluated."""
    extra = row.get("extra_info") or {}
    truth = (row.get("reward_model") or {}).get("ground_truth")
    return {
        "key": question_key(file, position),
        "sample": sample,
        "file": str(file),
        "position": position,
        "index": extra.get("index"),
        "data_source": str(row.get("data_source")),
        **{field: _plain(extra.get(field)) for field in ROW_FIELDS},
        "ground_truth": _plain(truth),
        "image_width": extra.get("image_width"),
        "image_height": extra.get("image_height"),
        "resized_width": extra.get("resized_width"),
        "resized_height": extra.get("resized_height"),
    }


def failed_record(base: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A question that produced no trajectory: counted under ``failed``, never correct."""
    return {
        **base,
        "failed": reason,
        "turns": [],
        "zooms": [],
        "answer": None,
        "answer_box_model": None,
        "answer_box_original": None,
        **{k: 0.0 for k in REWARD_KEYS},
        IOU: 0.0 if base["data_source"] in GROUNDING else IOU_NOT_APPLICABLE,
        "num_invalid_zooms": 0,
    }


def trajectory_records(
    rows: list[Mapping[str, Any]], bases: list[dict[str, Any]], out: Any, tokenizer: Any
) -> list[dict[str, Any]]:
    """One record per sample of a ``generate_sequences`` output (veRL's ``DataProto``), rewards included."""
    records = []
    prompt_len = out.batch["prompts"].shape[1]
    for i, (row, base) in enumerate(zip(rows, bases, strict=True)):
        responses = out.batch["responses"][i]
        length = int(out.batch["attention_mask"][i, prompt_len:].sum())
        ids = responses[:length].tolist()
        mask = out.batch["response_mask"][i, :length].tolist()
        turns = split_turns(ids, mask, tokenizer)
        zooms = [_plain(dict(z)) for z in _list(out.non_tensor_batch.get(ZOOM_RECORDS_KEY, [None] * len(rows))[i])]
        reward = {k: float(out.non_tensor_batch[k][i]) for k in REWARD_KEYS if k in out.non_tensor_batch}
        answer = final_answer([t["text"] for t in turns if t["role"] == "assistant"])
        extra = row.get("extra_info") or {}
        record = {
            **base,
            "resized_width": extra.get("resized_width"),
            "resized_height": extra.get("resized_height"),
            "failed": None,
            "turns": turns,
            "zooms": zooms,
            "answer": answer,
            **answer_boxes(answer, row),
            **reward,
            "num_invalid_zooms": sum(1 for z in zooms if not z.get("valid")),
        }
        records.append(record)
    return records


def split_turns(ids: list[int], mask: list[int], tokenizer: Any) -> list[dict[str, str]]:
    """The response as turns: runs of model tokens (mask 1) are assistant turns, the rest tool turns."""
    turns: list[dict[str, str]] = []
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or mask[end] != mask[start]:
            role = "assistant" if mask[start] else "tool"
            text = tokenizer.decode(ids[start:end], skip_special_tokens=True)
            text = text.strip() if mask[start] else _TOOL_ROLES.sub("", text)
            turns.append({"role": role, "text": text})
            start = end
    return turns


def answer_boxes(answer: str | None, row: Mapping[str, Any]) -> dict[str, list[float] | None]:
    """The grounding answer's box as written (resized frame) and in original pixels (the reward's parsing)."""
    boxes: dict[str, list[float] | None] = {"answer_box_model": None, "answer_box_original": None}
    extra = row.get("extra_info") or {}
    if answer is None or row.get("data_source") not in GROUNDING:
        return boxes
    box = parse_box(answer)
    sizes = [extra.get(k) for k in ("image_width", "image_height", "resized_width", "resized_height")]
    if box is None or not is_finite_box(box):
        return boxes
    boxes["answer_box_model"] = list(box)
    if all(isinstance(v, int) and v > 0 for v in sizes):
        frame = Frame(*sizes)
        boxes["answer_box_original"] = list(clamp(frame.to_original(box), frame.width, frame.height))
    return boxes


class RecordFile:
    """``trajectories.jsonl``: finished questions on disk, appended one question (all its samples) at a time."""

    def __init__(self, path: Path, n: int, retry_failed: bool) -> None:
        self.path = Path(path)
        self.n = n
        kept = [r for r in self._read() if not (retry_failed and r.get("failed"))]
        by_key: dict[str, dict[int, dict[str, Any]]] = {}
        for r in kept:
            by_key.setdefault(r["key"], {})[int(r["sample"])] = r
        finished = {k for k, samples in by_key.items() if set(samples) >= set(range(n))}
        self.records = [by_key[k][s] for k in finished for s in range(n)]
        self.finished = finished
        self._rewrite(self.records)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a write cut short: that question was in flight
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        """Keep exactly ``records`` (finished questions), replacing the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(_line(r) for r in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """All samples of one question in one write."""
        records = list(records)
        data = "".join(_line(r) for r in records).encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
        self.records.extend(records)
        if records:
            self.finished.add(records[0]["key"])


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=_plain) + "\n"


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value)


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy arrays and scalars to Python, bytes dropped, dicts and lists recursed."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
