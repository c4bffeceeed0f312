"""Convert Visual-CoT style data (question, answer, evidence box) to VQA training rows with the zoom tool.

Needs a JSON list or a JSONL file of records and the image folder they name. A record is either flat
  {"image": "<path under --image-root>", "question": ..., "answer": ..., "bboxs": [[x1, y1, x2, y2], ...]}
(``bbox`` for a single box; boxes in original pixels) or Visual-CoT's conversation form
  {"image": ..., "conversations": [{"from": "human", "value": "<image>\\nQ ..."}, ..., {"from": "gpt", "value": A}],
   "bboxs": [...]}
where the question is the first human turn (without Visual-CoT's "Please provide the bounding box ..." request)
and the answer the last model turn. Writes <out>/<input stem>.parquet with data_source visual_cot; the
evidence boxes are kept in extra_info.evidence_boxes.

  python data_prep/visual_cot_to_parquet.py --input viscot_gqa.jsonl --image-root ~/viscot/images --out ~/data/vcot
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.answers import answer_type
from verl_ext.data import cli
from verl_ext.data.images import probe_file, resolve_in_root
from verl_ext.data.rows import ImageRef, build_row, split_options, vqa_messages
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import BadRecord, DataPrepError, check_box_xyxy, check_text
from verl_ext.data_sources import VISUAL_COT

Item = tuple[int, Any]
#: Visual-CoT appends this request for the evidence box to each question; the zoom tool replaces it.
_BOX_REQUEST = re.compile(r"\s*Please provide the bounding box coordinate of the region.*$", re.S | re.I)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--input", type=Path, required=True, help="a .json (list of records) or .jsonl file")
    p.add_argument("--image-root", type=Path, required=True, help="folder the records' image paths are under")
    p.add_argument("--split", default="train", help="value of extra_info.split (default: train)")
    return p


def records(path: Path) -> Iterator[Item]:
    """(record number, record): JSONL streamed line by line; a JSON list loaded whole."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError as e:
                        yield number, BadRecord(path, f"line {number}", "invalid JSON", str(e))
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataPrepError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, list):
        raise DataPrepError(f"{path}: expected a JSON list of records")
    yield from enumerate(data)


def question_answer(record: dict[str, Any]) -> tuple[Any, Any]:
    if "conversations" not in record:
        return record.get("question"), record.get("answer")
    turns = [t for t in record.get("conversations") or [] if isinstance(t, dict)]
    human = [t.get("value") for t in turns if t.get("from") in ("human", "user")]
    model = [t.get("value") for t in turns if t.get("from") in ("gpt", "assistant")]
    question = human[0] if human and isinstance(human[0], str) else None
    if question is not None:
        question = _BOX_REQUEST.sub("", question.replace("<image>", "")).strip()
    return question, model[-1] if model else None


class VisualCotConverter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._images: dict[str, ImageRef] = {}

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        number, record = item
        src = self.args.input
        where = f"{'line' if src.suffix == '.jsonl' else 'record'} {number}"
        if isinstance(record, BadRecord):
            raise record
        if not isinstance(record, dict):
            raise BadRecord(src, where, "record is not a JSON object")
        name = check_text(record.get("image"), src, where, "image")
        image = self._images.get(name)
        if image is None:
            path = resolve_in_root(self.args.image_root, name, src, where)
            info = probe_file(path, src, where)
            image = self._images.setdefault(name, ImageRef(path, info.width, info.height))
        question, answer = question_answer(record)
        question = check_text(question, src, where, "question")
        answer = check_text(answer, src, where, "answer")
        boxes = record.get("bboxs", [record["bbox"]] if "bbox" in record else None)
        if not isinstance(boxes, list) or not boxes:
            raise BadRecord(src, where, "missing evidence box", repr(boxes)[:80])
        boxes = [check_box_xyxy(b, image.width, image.height, src, where) for b in boxes]
        stem, options = split_options(question)
        if options and len(answer) == 1 and "A" <= answer.upper() < chr(ord("A") + len(options)):
            question, answer, kind = stem, answer.upper(), "multiple_choice"
        else:
            options, kind = [], answer_type(answer)
        extra = {
            "split": self.args.split,
            "question": question,
            "answer": answer,
            "options": options or None,
            "answer_type": kind,
            "category": record.get("dataset"),
            "source_id": str(record.get("question_id", number)),
            "evidence_boxes": boxes,
        }
        row = build_row(
            data_source=VISUAL_COT,
            messages=vqa_messages(question, options, self.args.protocol),
            image=image.embedded() if self.args.embed_images else image,
            ability="vqa",
            ground_truth=answer,
            extra_info=extra,
            use_tool=True,
        )
        return src.stem, row


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.input.is_file():
        raise DataPrepError(f"{args.input}: missing input file")
    if not args.image_root.is_dir():
        raise DataPrepError(f"{args.image_root}: image root is not a folder")
    return cli.convert(
        records(args.input),
        VisualCotConverter(args).build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        limit=args.limit,
        desc=VISUAL_COT,
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
