"""Convert HR-Bench 4K / 8K (TSV with base64 images) to a veRL evaluation parquet.

Needs the benchmark's TSV: columns index, question, A, B, C, D, answer (the correct letter), category,
cycle_category, image (base64 JPEG, or the index of an earlier row holding the same image).
Writes <out>/hr_bench_4k.parquet (or _8k). The decoded images are written once each (named by content
hash) under <out>/hr_bench_4k_images/ and referenced by path, so the parquet stays small and the zoom tool
reads the full-resolution original; --embed-images keeps the bytes in the parquet instead.

  python data_prep/hr_bench_to_parquet.py --tsv hr_bench_8k.tsv --out ~/data/eval
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.data import cli
from verl_ext.data.images import ImageStore, probe_bytes
from verl_ext.data.rows import ImageRef, build_row, stored_image, vqa_messages
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import BadRecord, DataPrepError, check_letter, check_text
from verl_ext.data_sources import HR_BENCH_4K, HR_BENCH_8K

COLUMNS = ("index", "question", "A", "B", "C", "D", "answer", "category", "cycle_category", "image")
VARIANTS = {"4k": HR_BENCH_4K, "8k": HR_BENCH_8K}
SPLIT = "test"

Item = tuple[int, dict[str, str]]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--tsv", type=Path, required=True, help="hr_bench_4k.tsv or hr_bench_8k.tsv")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None, help="default: from the file name")
    return p


def read_tsv(path: Path) -> Iterator[Item]:
    """(line number, record) pairs, streamed: the base64 fields make the file large."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataPrepError(f"{path}: not an HR-Bench TSV, missing columns {missing}")
        for record in reader:
            yield reader.line_num, record


class HrBenchConverter:
    def __init__(self, args: argparse.Namespace, data_source: str) -> None:
        self.args = args
        self.data_source = data_source
        self.store = ImageStore(args.out / f"{data_source}_images")
        self._by_index: dict[str, ImageRef] = {}

    def image(self, record: dict[str, str], where: str) -> ImageRef:
        field = (record.get("image") or "").strip()
        if field.isdigit() and len(field) < 16:
            if field not in self._by_index:
                raise BadRecord(self.args.tsv, where, "image refers to an unknown row", f"index {field}")
            return self._by_index[field]
        try:
            data = base64.b64decode(field, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRecord(self.args.tsv, where, "image is not valid base64", str(e)) from e
        info = probe_bytes(data, self.args.tsv, where)
        return stored_image(data, info, self.args.embed_images, self.store)

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        line, record = item
        where = f"index {record.get('index')} (line {line})"
        question = check_text(record.get("question"), self.args.tsv, where, "question")
        options = []
        for letter in "ABCD":
            text = (record.get(letter) or "").strip()
            if not text or text.lower() == "nan":
                break
            options.append(text)
        if len(options) < 2:
            raise BadRecord(self.args.tsv, where, "fewer than two options")
        answer = check_letter(record.get("answer"), options, self.args.tsv, where)
        image = self.image(record, where)
        self._by_index[str(record.get("index")).strip()] = image
        extra = {
            "split": SPLIT,
            "question": question,
            "answer": answer,
            "options": options,
            "answer_type": "multiple_choice",
            "category": record.get("category"),
            "cycle_category": record.get("cycle_category"),
            "source_id": str(record.get("index")),
        }
        row = build_row(
            data_source=self.data_source,
            messages=vqa_messages(question, options, self.args.protocol),
            image=image,
            ability="vqa",
            ground_truth=answer,
            extra_info=extra,
            use_tool=True,
        )
        return self.data_source, row


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.tsv.is_file():
        raise DataPrepError(f"{args.tsv}: missing TSV file")
    variant = args.variant or next((v for v in VARIANTS if v in args.tsv.name.lower()), None)
    if variant is None:
        raise DataPrepError(f"{args.tsv}: cannot tell 4k from 8k by the file name; pass --variant")
    converter = HrBenchConverter(args, VARIANTS[variant])
    return cli.convert(
        read_tsv(args.tsv),
        converter.build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        limit=args.limit,
        desc=VARIANTS[variant],
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
