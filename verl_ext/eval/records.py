"""Trajectory records (one per question and sample), the resumable JSONL file that holds them, and the out_dir.

A record carries what the metrics need and what a reader checks a number by: the question, every turn's
text, each zoom's box in the model's frame and in original pixels, the final answer (for grounding also its
box in both frames), the reward's outputs (score, acc, format, IoU, evidence scale) and, for a question that
could not be evaluated, the reason (``failed``, secrets redacted, cut to ``MAX_REASON_CHARS``), in which case it
is never correct.

The file is only ever appended, one question (all its samples) at a time with a single ``write`` of complete
lines, so an interrupted run loses at most the questions in flight. On reading, the last record of each
(question, sample) wins (a retried question's new records follow its old ones); a line that is not a record (cut
by a crash, edited, damaged) is reported by number and skipped, and stays where it is. One run at a time holds an
out_dir (:func:`out_dir_lock`); outputs are replaced atomically through unique temporaries (:func:`write_atomic`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from verl_ext.data_sources import GROUNDING
from verl_ext.eval.backends import EvalConfigError, redact
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.geometry import Frame, clamp, is_finite_box
from verl_ext.reward.grounding import parse_box
from verl_ext.reward.text import final_answer
from verl_ext.reward_keys import IOU, IOU_NOT_APPLICABLE, REWARD_KEYS

#: Row fields copied into every record (from the dataset row's ``extra_info``).
ROW_FIELDS = ("split", "category", "cycle_category", "source_id", "question", "options", "expression")
#: The chat template's role words around a tool turn once special tokens are gone ("user\n<tool_response>...").
_TOOL_ROLES = re.compile(r"^\s*user\s*|\s*assistant\s*$")
#: A failure reason longer than this is cut (a server's error body can be anything).
MAX_REASON_CHARS = 2000
#: Hex digits of a data file's SHA-256 in its questions' keys.
KEY_DIGEST_CHARS = 12
#: The out_dir's lock file: held (``flock``) by the run writing there, holding its pid.
LOCK_FILE = "run.lock"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def question_key(file: str, position: int, digest: str) -> str:
    """Id of a question: its data file's name and content digest, and its row; unique across files of one name in
    different folders, unchanged when the file moves."""
    return f"{Path(file).name}@{digest[:KEY_DIGEST_CHARS]}#{position}"


def base_record(file: str, digest: str, position: int, sample: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a record has whether or not the question could be evaluated."""
    extra = row.get("extra_info") or {}
    truth = (row.get("reward_model") or {}).get("ground_truth")
    return {
        "key": question_key(file, position, digest),
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
    """A question that produced no trajectory: counted under ``failed``, never correct. The reason is redacted
    (no API key, bearer token or URL credentials) and cut to ``MAX_REASON_CHARS``."""
    reason = redact(reason)
    if len(reason) > MAX_REASON_CHARS:
        reason = f"{reason[:MAX_REASON_CHARS]}... ({len(reason) - MAX_REASON_CHARS} more characters)"
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


class _Turn(BaseModel):
    role: Literal["assistant", "tool"]
    text: str


class _Record(BaseModel):
    """What a line must hold to be read as a record (the fields the metrics and the report index)."""

    model_config = ConfigDict(extra="allow", strict=True)
    key: str
    sample: int
    file: str
    position: int
    data_source: str
    failed: str | None
    turns: list[_Turn]
    zooms: list[dict[str, Any]]


class RecordFile:
    """``trajectories.jsonl``: finished questions on disk, appended one question (all its samples) at a time.

    ``records`` are the finished questions' records (for each (key, sample) its last line), ``finished`` their keys,
    ``damaged`` the numbers of the lines that are not records of this run (left in the file, skipped)."""

    def __init__(self, path: Path, n: int, retry_failed: bool) -> None:
        self.path = Path(path)
        self.n = n
        latest: dict[str, dict[int, dict[str, Any]]] = {}
        self.damaged: list[int] = []
        for number, record in self._read():
            if record is None or not 0 <= record["sample"] < n:
                self.damaged.append(number)
            else:
                latest.setdefault(record["key"], {})[record["sample"]] = record
        finished = {
            key
            for key, samples in latest.items()
            if set(samples) >= set(range(n)) and not (retry_failed and any(s.get("failed") for s in samples.values()))
        }
        self.records = [latest[k][s] for k in sorted(finished) for s in range(n)]
        self.finished = finished

    def _read(self) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(line number, record or None for a line that is not one), for every line."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    record = json.loads(raw)
                    _Record.model_validate(record)
                except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    record = None
                yield number, record

    def report_damaged(self) -> None:
        """Say which lines were skipped (they stay in the file: nothing is deleted on a guess)."""
        if self.damaged:
            shown = ", ".join(map(str, self.damaged[:20])) + (" ..." if len(self.damaged) > 20 else "")
            print(
                f"[eval] {self.path}: {len(self.damaged)} line(s) are not records of this run and were skipped "
                f"(kept in the file): line {shown}",
                file=sys.stderr,
            )

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """All samples of one question in one write (after a newline if the file ends inside a line)."""
        records = list(records)
        data = "".join(_line(r) for r in records).encode("utf-8")
        with open(self.path, "ab+") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            f.flush()
        self.records.extend(records)
        if records:
            self.finished.add(records[0]["key"])


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, through a temporary of a unique name in the same folder."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as f:
        tmp = Path(f.name)
        try:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def out_dir_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir`` for this process: a second run stops with a message naming the first one's pid. The lock is
    ``flock``'s, so the kernel releases it when its process dies (a stale lock never blocks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise EvalConfigError(
                f"eval.out_dir={out_dir} is in use by another evaluation (pid {holder}); wait for it to finish, "
                "or set another eval.out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


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
