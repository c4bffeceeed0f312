"""What every converter script shares: common flags, the conversion loop with progress bar, skips and summary.

The loop keeps the books: records read == rows written + records skipped (each with its reason), and
notes count what was repaired on the way (an evidence box clamped to the image) without dropping a row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from tqdm import tqdm

from verl_ext.data.rows import SYSTEM_PROMPTS, validate_row
from verl_ext.data.validation import BadRecord, DataPrepError, Skipped, check_split
from verl_ext.data.writer import SplitWriter, prepare_out_dir

T = TypeVar("T")
#: How many skipped records are listed one by one before only the counts are shown.
SHOW_SKIPPED = 20


def parser(description: str, *, protocol: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the flags every converter has."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="remove the outputs of an earlier run in --out first (default: refuse to write over them)",
    )
    p.add_argument("--limit", type=int, default=None, help="convert only the first N records (a quick sample)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip records with bad input (missing/unreadable image, bad box or number, a chat-template token in "
        "text ...) and count them; default: stop",
    )
    p.add_argument(
        "--embed-images",
        action="store_true",
        help="store the encoded image bytes in the parquet (and in the zoom tool's kwargs) instead of paths",
    )
    if protocol:
        p.add_argument(
            "--protocol",
            choices=sorted(SYSTEM_PROMPTS),
            default="box",
            help="zoom-call syntax the system prompt teaches: 'box' (<box>[x1,y1,x2,y2]</box>, the paper's) "
            "or 'hermes' (<tool_call> JSON); must match the recipe's multi_turn.format (default: box)",
        )
    return p


def split_name(value: str) -> str:
    """argparse type of ``--split``: a name that could name an output file (no ``/``, no leading dot)."""
    try:
        return check_split(value, "--split", value)
    except BadRecord as e:
        raise argparse.ArgumentTypeError(f"{value!r}: {e.reason}") from e


@dataclass
class Summary:
    """Counts of one conversion, printed at the end."""

    read: int = 0
    written: dict[str, int] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def lines(self, out_dir: Path) -> list[str]:
        out = [f"wrote {n} rows to {out_dir / f'{name}.parquet'}" for name, n in sorted(self.written.items())]
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
        out.append(f"skipped {sum(self.skipped.values())} records" + (f" ({reasons})" if reasons else ""))
        out += [f"note: {note}: {n}" for note, n in sorted(self.notes.items())]
        out.append(
            f"records read {self.read} = rows written {sum(self.written.values())} "
            f"+ records skipped {sum(self.skipped.values())}"
        )
        return out


def convert(
    items: Iterable[T],
    build: Callable[[T], tuple[str, dict[str, Any]]],
    *,
    out_dir: Path,
    schema: pa.Schema,
    skip_bad: bool,
    outputs: Iterable[str],
    folders: Iterable[str] = (),
    overwrite: bool = False,
    notes: Counter[str] | None = None,
    limit: int | None = None,
    total: int | None = None,
    desc: str = "converting",
) -> Summary:
    """Turn each item into ``(file name, row)`` with ``build`` and write it; BadRecord stops or is skipped.

    ``outputs`` names every parquet file the run may write and ``folders`` the image folders it fills under
    ``out_dir`` (see :func:`prepare_out_dir`); ``notes`` is the converter's own counter of repairs.
    """
    summary = Summary(notes=notes if notes is not None else Counter())
    folders = list(folders)
    if limit is not None:
        total = limit if total is None else min(total, limit)
    prepare_out_dir(out_dir, outputs, folders, overwrite)
    try:
        _write(items, build, summary, SplitWriter(out_dir, schema), skip_bad, limit, total, desc)
    except BaseException:
        for folder in folders:  # absent or emptied at the start: all in it is this failed run's
            shutil.rmtree(Path(out_dir) / folder, ignore_errors=True)
        raise
    return summary


def _write(
    items: Iterable[T],
    build: Callable[[T], tuple[str, dict[str, Any]]],
    summary: Summary,
    writer: SplitWriter,
    skip_bad: bool,
    limit: int | None,
    total: int | None,
    desc: str,
) -> None:
    """The conversion loop: read, build, skip or stop, and write each row into ``writer``."""
    with writer:
        for item in tqdm(itertools.islice(items, limit), total=total, desc=desc, unit="row", file=sys.stderr):
            summary.read += 1
            try:
                name, row = build(item)
            except (BadRecord, Skipped) as e:
                if isinstance(e, BadRecord) and not skip_bad:
                    raise
                summary.skipped[e.reason] += 1
                if sum(summary.skipped.values()) <= SHOW_SKIPPED:
                    tqdm.write(f"skipped: {e}", file=sys.stderr)
                continue
            row["extra_info"]["index"] = writer.counts.get(name, 0)
            validate_row(row)
            writer.write(name, row)
        summary.written = dict(writer.counts)


def json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(record number, record) of a JSONL file, streamed line by line, or of a JSON list, loaded whole.

    A JSONL line that is not UTF-8 or not JSON comes as a BadRecord in place of the record, so that the
    converter counts it (or stops on it) like any other bad record; a byte-order mark is allowed.
    """
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield number, BadRecord(path, f"line {number}", "text is not UTF-8", str(e))
                    continue
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError as e:
                        yield number, BadRecord(path, f"line {number}", "invalid JSON", str(e))
        return
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        raise DataPrepError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, list):
        raise DataPrepError(f"{path}: expected a JSON list of records")
    yield from enumerate(data)


def run(
    p: argparse.ArgumentParser, main: Callable[[argparse.Namespace], Summary], argv: list[str] | None = None
) -> None:
    """Parse the flags and run a converter: print the summary, or a one-line error (exit status 2) for bad input."""
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    try:
        summary = main(args)
    except BadRecord as e:
        print(f"error: {e}\n(use --skip-bad to skip such records and count them)", file=sys.stderr)
        sys.exit(2)
    except DataPrepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for line in summary.lines(args.out):
        print(line)
