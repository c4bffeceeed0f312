"""Streaming parquet writer: one file per split, row groups of bounded size, renamed into place at the end.

Rows are buffered per split and flushed as a row group every ``row_group_size`` rows, so memory does
not grow with the input. Each file is written under a temporary name in the output folder and renamed
only when the whole conversion succeeded: an interrupted or failed run leaves no half-written parquet.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_ROW_GROUP_SIZE = 1024


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
