"""Convert HR-Bench 4K / 8K (TSV with base64 images) to a veRL evaluation parquet.

Reads the benchmark's TSV as VLMEvalKit writes and reads it: tab-separated with CSV quoting (fields may be
quoted, the whole file may be written with every field quoted, a quoted field may hold tabs, doubled quotes
and newlines), UTF-8 with or without a byte-order mark. Columns: index, question, A, B, C, D (more letters
are read when present), answer (the correct letter), category, cycle_category, image (base64 JPEG, or the
index of another row, earlier or later in the file, holding the same image).

Writes <out>/hr_bench_4k.parquet (or _8k). Each image is decoded once, written once (named by content hash)
under <out>/hr_bench_4k_images/ and referenced by path, so the parquet stays small, memory holds no images,
and the zoom tool reads the full-resolution original; --embed-images keeps the bytes in the parquet instead.
A row whose image is the index of a later row waits for that row (it is written after it). Options are the
letter columns in order; an empty or "nan" cell ends them, and one followed by a non-empty option is refused
(a letter would change meaning), as are duplicate option texts.

  python data_prep/hr_bench_to_parquet.py --tsv hr_bench_8k.tsv --out ~/data/eval
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import os
import shutil
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.data import cli
from verl_ext.data.images import ImageStore, probe_bytes
from verl_ext.data.rows import ImageRef, stored_image, vqa_row
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import (
    BadRecord,
    DataPrepError,
    check_letter,
    check_options,
    check_prompt_text,
    check_tokens,
    optional_text,
)
from verl_ext.data_sources import HR_BENCH_4K, HR_BENCH_8K

COLUMNS = ("index", "question", "A", "B", "answer", "image")
VARIANTS = {"4k": HR_BENCH_4K, "8k": HR_BENCH_8K}
SPLIT = "test"
#: Option cells that mean "no option" (pandas reads both as NaN when VLMEvalKit loads the TSV).
MISSING = ("", "nan")

#: (data row number, record, its image or why it has none)
Item = tuple[int, dict[str, Any], "ImageRef | BadRecord"]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--tsv", type=Path, required=True, help="hr_bench_4k.tsv or hr_bench_8k.tsv")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None, help="default: from the file name")
    return p


def read_tsv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(data row number, record), streamed with CSV quoting: the base64 fields make the file large.

    Bytes that are not UTF-8 come through as surrogates, so the record holding them is named and refused
    by the text checks instead of stopping the whole file.
    """
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataPrepError(f"{path}: not an HR-Bench TSV, missing columns {missing}")
        try:
            yield from enumerate(reader, 1)
        except csv.Error as e:
            raise DataPrepError(f"{path}: malformed TSV near line {reader.line_num} ({e})") from e


def is_reference(field: str) -> bool:
    """An ``image`` cell holding another row's index instead of base64 data."""
    return field.isdigit() and len(field) < 16


class HrBenchConverter:
    def __init__(self, args: argparse.Namespace, data_source: str, store: ImageStore) -> None:
        self.args = args
        self.data_source = data_source
        self.store = store
        self._seen: set[str] = set()

    def where(self, number: int, record: dict[str, Any]) -> str:
        return f"index {record.get('index')} (row {number})"

    def items(self, records: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[Item]:
        """Each record with its image, references resolved over the whole file in one pass.

        Decoded images go to disk at once and only their paths are kept; a record that names a row not yet
        read waits (its text only) until that row comes, or is reported at the end if it never does.
        """
        images: dict[str, ImageRef | BadRecord] = {}
        waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for number, record in records:
            field = (record.get("image") or "").strip() if isinstance(record.get("image"), str) else ""
            if is_reference(field):
                if field in images:
                    yield number, record, self.referred(images[field], number, record, field)
                else:
                    waiting.setdefault(field, []).append((number, record))
                continue
            image = self.decode(field, self.where(number, record))
            index = str(record.get("index") or "").strip()
            images.setdefault(index, image)
            yield number, record, image
            for later in waiting.pop(index, []):
                yield *later, self.referred(image, *later, index)
        for field, rows in waiting.items():
            for number, record in rows:
                bad = BadRecord(self.args.tsv, self.where(number, record), "image refers to an unknown row", field)
                yield number, record, bad

    def referred(self, image: ImageRef | BadRecord, number: int, record: dict[str, Any], field: str):
        """The image of row ``field`` for a row that refers to it; a bad one is reported as such."""
        if isinstance(image, BadRecord):
            where, detail = self.where(number, record), f"index {field}: {image.reason}"
            return BadRecord(self.args.tsv, where, "image refers to a row with a bad image", detail)
        return image

    def decode(self, field: str, where: str) -> ImageRef | BadRecord:
        try:
            data = base64.b64decode(field, validate=True)
            if not data:
                raise BadRecord(self.args.tsv, where, "missing image")
            return stored_image(data, probe_bytes(data, self.args.tsv, where), False, self.store)
        except (binascii.Error, ValueError) as e:
            return BadRecord(self.args.tsv, where, "image is not valid base64", str(e))
        except BadRecord as e:
            return e

    def options(self, record: dict[str, Any], where: str) -> list[str]:
        letters = [c for c in string.ascii_uppercase if c in record]
        cells = [record.get(c) for c in letters]
        given = [isinstance(c, str) and c.strip().lower() not in MISSING for c in cells]
        count = given.index(False) if False in given else len(given)
        if any(given[count:]):
            later = letters[count + given[count:].index(True)]
            raise BadRecord(self.args.tsv, where, "empty option before a given one", f"{letters[count]} before {later}")
        texts = [check_prompt_text(record[c], self.args.tsv, where, f"option {c}") for c in letters[:count]]
        return check_options(texts, self.args.tsv, where)

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        number, record, image = item
        where = self.where(number, record)
        if None in record or None in record.values():
            raise BadRecord(self.args.tsv, where, "wrong number of fields")
        index = check_tokens(str(record.get("index")).strip(), self.args.tsv, where, "index")
        if index in self._seen:
            raise BadRecord(self.args.tsv, where, "duplicate index")
        self._seen.add(index)
        question = check_prompt_text(record.get("question"), self.args.tsv, where, "question")
        options = self.options(record, where)
        answer = check_letter(record.get("answer"), options, self.args.tsv, where)
        if isinstance(image, BadRecord):
            raise image
        if self.args.embed_images and image.path is not None:
            image = ImageRef(None, image.width, image.height, image.path.read_bytes(), image.orientation)
        row = vqa_row(
            data_source=self.data_source,
            question=question,
            options=options,
            answer=answer,
            answer_type="multiple_choice",
            image=image,
            protocol=self.args.protocol,
            extra_info={
                "split": SPLIT,
                "category": optional_text(record.get("category"), self.args.tsv, where, "category"),
                "cycle_category": optional_text(record.get("cycle_category"), self.args.tsv, where, "cycle_category"),
                "source_id": index,
            },
        )
        return self.data_source, row


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.tsv.is_file():
        raise DataPrepError(f"{args.tsv}: missing TSV file")
    variant = args.variant or next((v for v in VARIANTS if v in args.tsv.name.lower()), None)
    if variant is None:
        raise DataPrepError(f"{args.tsv}: cannot tell 4k from 8k by the file name; pass --variant")
    data_source = VARIANTS[variant]
    folder = f"{data_source}_images"
    # With --embed-images the decoded images still wait on disk (a scratch folder) rather than in memory.
    store = args.out / (f".{folder}.tmp-{os.getpid()}" if args.embed_images else folder)
    converter = HrBenchConverter(args, data_source, ImageStore(store))
    try:
        return cli.convert(
            converter.items(read_tsv(args.tsv)),
            converter.build,
            out_dir=args.out,
            schema=ANSWER_SCHEMA,
            skip_bad=args.skip_bad,
            outputs=[data_source],
            folders=[] if args.embed_images else [folder],
            overwrite=args.overwrite,
            limit=args.limit,
            desc=data_source,
        )
    finally:
        if args.embed_images:
            shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    cli.run(build_parser(), main)
