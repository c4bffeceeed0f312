"""Streaming parquet writer: one file per split, row groups of bounded size, renamed into place at the end.

Rows are buffered per split and flushed as a row group every ``row_group_size`` rows, so memory does
not grow with the input. Each file is written under a temporary name in the output folder and renamed
only when the whole conversion succeeded: an interrupted or failed run leaves no half-written parquet.
:func:`prepare_out_dir` makes the output folder safe to write: temporaries of a killed run are removed,
and outputs of an earlier run are refused unless ``--overwrite`` says to remove them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.data.validation import DataPrepError

DEFAULT_ROW_GROUP_SIZE = 1024
#: Temporary names this package writes (``.<name>.tmp-<pid>``): parquet files, stored images, scratch folders.
_TMP = re.compile(r"\..+\.tmp-(\d+)")


def prepare_out_dir(out_dir: Path, names: Iterable[str], folders: Iterable[str] = (), overwrite: bool = False) -> None:
    """Create ``out_dir`` and clear what stands in the way of writing ``<name>.parquet`` files and image ``folders``.

    Temporaries left by a killed run (its process gone) are removed. Earlier outputs, the parquet files this
    run may write and the image folders it fills, are refused: a partial run (``--limit``) would otherwise
    sit beside the other splits of a full one with nothing said. ``overwrite`` removes them first.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataPrepError(f"--out {out_dir}: is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataPrepError(f"--out {out_dir}: cannot create the folder ({e})") from e
    folders = [out_dir / f for f in folders]
    for place in [out_dir, *folders]:
        for path in place.glob(".*.tmp-*") if place.is_dir() else ():
            match = _TMP.fullmatch(path.name)
            if match and not _alive(int(match.group(1))):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    earlier = [out_dir / f"{n}.parquet" for n in sorted(set(names))]
    earlier = [p for p in earlier if p.exists()] + [f for f in folders if f.exists()]
    if earlier and not overwrite:
        listed = ", ".join(str(p) for p in earlier[:5]) + (f" and {len(earlier) - 5} more" if len(earlier) > 5 else "")
        raise DataPrepError(
            f"--out {out_dir} holds outputs of an earlier run ({listed}); pass --overwrite to remove them "
            "and write afresh, or choose another --out"
        )
    for path in earlier:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _alive(pid: int) -> bool:
    """True when process ``pid`` still runs (its temporaries may be in use)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SplitWriter:
    """Context manager writing ``<out>/<name>.parquet`` files; commits on success, deletes temporaries on error."""

    def __init__(self, out_dir: Path, schema: pa.Schema, row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> None:
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.row_group_size = row_group_size
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._tmp: dict[str, Path] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> SplitWriter:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, name: str, row: dict[str, Any]) -> None:
        buffer = self._buffers.setdefault(name, [])
        buffer.append(row)
        self.counts[name] = self.counts.get(name, 0) + 1
        if len(buffer) >= self.row_group_size:
            self._flush(name)

    def _flush(self, name: str) -> None:
        rows = self._buffers.get(name)
        if not rows:
            return
        if name not in self._writers:
            tmp = self.out_dir / f".{name}.parquet.tmp-{os.getpid()}"
            self._tmp[name] = tmp
            self._writers[name] = pq.ParquetWriter(tmp, self.schema)
        self._writers[name].write_table(pa.Table.from_pylist(rows, schema=self.schema))
        rows.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ok = exc_type is None
        try:
            if ok:
                for name in list(self._buffers):
                    self._flush(name)
        except BaseException:
            ok = False
            raise
        finally:
            for writer in self._writers.values():
                writer.close()
            for name, tmp in self._tmp.items():
                if ok:
                    os.replace(tmp, self.out_dir / f"{name}.parquet")
                else:
                    tmp.unlink(missing_ok=True)
