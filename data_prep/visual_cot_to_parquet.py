"""Convert Visual-CoT (question, answer, evidence box) to VQA training rows with the zoom tool.

Needs a JSON list or a JSONL file of records and the image folder they name. The form is detected per record:

  LLaVA form (viscot_363k.json, viscot_benchmark/benchmark/*.json):
    {"image": ["cot/gqa/1.jpg", "cot/gqa/1.jpg###[217, 343, 242, 393]"], "conversations": [
       {"from": "human", "value": "<image>\\nQ Please provide the bounding box coordinate of the region ..."},
       {"from": "gpt", "value": "[0.41, 0.52, 0.46, 0.61]"}, {"from": "human", "value": "<image>"},
       {"from": "gpt", "value": "A"}]}
    The evidence box is the ###[x1, y1, x2, y2] suffix (original pixels); the question is the first human turn
    without the image tag and the box request; the answer is the last gpt turn (the first gpt turn holds a
    box normalised to the padded square and is not used). A "bboxs" key is read too when present.
  Metadata form (metadata/<dataset>_cot_train.jsonl):
    {"dataset", "split", "image", "question", "answer", "bboxs": [[x1, y1, x2, y2], ...], "width", "height"}
    ("bbox" for one box); Visual7W's "multiple_choices" make the row multiple choice: the options are the
    choices (with the answer added when it is not among them, placed by a seeded shuffle) and the ground
    truth is the answer's letter.
  Ground-R1 form (Ground-R1's eval_dataset/visualCoT_eval_*.jsonl):
    {"image", "width", "height", "bboxs", "dataset", "split", "problem", "solution", "problem_id"}

Image paths are relative to --image-root; an absolute path (Ground-R1's files hold their authors' paths) is
matched by its longest tail that exists under --image-root. Evidence boxes are not the answer: one that
overshoots the image is clamped (counted in the summary), never a reason to drop the row. Writes
<out>/<input stem>.parquet with data_source visual_cot; the evidence boxes go to extra_info.evidence_boxes
in the frame of the image as shown (EXIF orientation applied).

  python data_prep/visual_cot_to_parquet.py --input viscot_363k.json --image-root ~/viscot --out ~/data/vcot
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from verl_ext.answers import answer_type
from verl_ext.data import cli
from verl_ext.data.images import find_in_root, probe_file
from verl_ext.data.rows import ImageRef, split_options, vqa_row
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import (
    BadRecord,
    DataPrepError,
    check_options,
    check_prompt_text,
    check_text,
    evidence_box,
    optional_text,
    source_id,
)
from verl_ext.data_sources import VISUAL_COT

Item = tuple[int, Any]
#: Visual-CoT appends this request for the evidence box to each question; the zoom tool replaces it.
_BOX_REQUEST = re.compile(r"\s*Please provide the bounding box coordinate of the region.*$", re.S | re.I)
#: The LLaVA form's evidence box, a suffix of an image entry: "cot/gqa/1.jpg###[217, 343, 242, 393]".
_BOX_SUFFIX = "###"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--input", type=Path, required=True, help="a .json (list of records) or .jsonl file")
    p.add_argument("--image-root", type=Path, required=True, help="folder the records' image paths are under")
    p.add_argument("--split", type=cli.split_name, default="train", help="value of extra_info.split (default: train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the option shuffle of Visual7W records")
    return p


def llava_image(value: object, src: Path, where: str) -> tuple[object, list[object]]:
    """(image name, evidence boxes) of an ``image`` entry: a name, or the LLaVA list with ``###[...]`` suffixes."""
    if not isinstance(value, list):
        return value, []
    if not value or not all(isinstance(v, str) for v in value):
        raise BadRecord(src, where, "malformed image list", repr(value)[:80])
    boxes: list[object] = []
    for entry in value:
        _, sep, suffix = entry.partition(_BOX_SUFFIX)
        if sep:
            try:
                boxes.append(json.loads(suffix))
            except ValueError:
                boxes.append(suffix)  # left out of the row as a malformed evidence box
    return value[0].partition(_BOX_SUFFIX)[0], boxes


def question_answer(record: dict[str, Any], src: Path, where: str) -> tuple[object, object]:
    """(question, answer) of whichever form the record is in."""
    if "conversations" in record:
        turns = record.get("conversations")
        if not isinstance(turns, list):
            raise BadRecord(src, where, "malformed conversations", type(turns).__name__)
        turns = [t for t in turns if isinstance(t, dict)]
        human = [t.get("value") for t in turns if t.get("from") in ("human", "user")]
        model = [t.get("value") for t in turns if t.get("from") in ("gpt", "assistant")]
        question = human[0] if human and isinstance(human[0], str) else None
        if question is not None:
            question = _BOX_REQUEST.sub("", question.replace("<image>", ""))
        if isinstance(record.get("image"), list) and len(model) < 2:
            raise BadRecord(src, where, "missing answer", "only the box turn, no answer turn")
        return question, model[-1] if model else None
    if "problem" in record or "solution" in record:
        if isinstance(record.get("solution"), list):
            detail = "Ground-R1's RefCOCO form (expressions, no question): use refcoco_to_parquet.py --jsonl"
            raise BadRecord(src, where, "not a VQA record", detail)
        return record.get("problem"), record.get("solution")
    return record.get("question"), record.get("answer")


class VisualCotConverter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.notes: Counter[str] = Counter()
        self._images: dict[str, ImageRef] = {}

    def image(self, name: object, src: Path, where: str) -> ImageRef:
        name = check_text(name, src, where, "image")
        image = self._images.get(name)
        if image is None:
            path = find_in_root(self.args.image_root, name, src, where)
            image = self._images.setdefault(name, ImageRef.of(path, probe_file(path, src, where)))
        return image

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        number, record = item
        src = self.args.input
        where = f"{'line' if src.suffix == '.jsonl' else 'record'} {number}"
        if isinstance(record, BadRecord):
            raise record
        if not isinstance(record, dict):
            raise BadRecord(src, where, "record is not a JSON object")
        name, suffix_boxes = llava_image(record.get("image"), src, where)
        question, answer = question_answer(record, src, where)
        question = check_prompt_text(question, src, where, "question")
        answer = check_text(answer, src, where, "answer")
        dataset = optional_text(record.get("dataset"), src, where, "dataset")
        image = self.image(name, src, where)
        raw = record.get("bboxs", [record["bbox"]] if "bbox" in record else None)
        raw = [] if raw is None else raw if isinstance(raw, list) else [raw]  # not a list: one malformed box
        ident = next((record[k] for k in ("question_id", "problem_id", "id") if record.get(k) is not None), number)
        ident = source_id(ident, src, where)
        question, options, answer, kind = self.answer(record, question, answer, f"{self.args.seed}:{ident}", where)
        boxes = self.evidence(raw + suffix_boxes, image)
        row = vqa_row(
            data_source=VISUAL_COT,
            question=question,
            options=options,
            answer=answer,
            answer_type=kind,
            image=image.embedded() if self.args.embed_images else image,
            protocol=self.args.protocol,
            extra_info={
                "split": self.args.split,
                "category": dataset,
                "source_id": ident,
                "evidence_boxes": boxes or None,
            },
        )
        return src.stem, row

    def answer(self, record: dict[str, Any], question: str, answer: str, seed: str, where: str):
        """(question, options, ground truth, answer type); Visual7W choices and option lines make multiple choice."""
        src = self.args.input
        choices = record.get("multiple_choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices:
                raise BadRecord(src, where, "malformed multiple_choices", repr(choices)[:80])
            options = [check_prompt_text(c, src, where, "choice") for c in choices]
            if answer not in options:
                options.append(answer)
                random.Random(seed).shuffle(options)
            options = check_options(options, src, where)
            return question, options, chr(ord("A") + options.index(answer)), "multiple_choice"
        stem, options = split_options(question)
        if options and len(answer) == 1 and "A" <= answer.upper() < chr(ord("A") + len(options)):
            return stem, check_options(options, src, where), answer.upper(), "multiple_choice"
        return question, [], answer, answer_type(answer)

    def evidence(self, raw: list[object], image: ImageRef) -> list[list[float]]:
        """Evidence boxes (stored-file pixels) clamped, deduplicated and mapped into the oriented frame."""
        width, height = image.stored_size
        boxes: list[list[float]] = []
        for box in raw:
            clamped, note = evidence_box(box, width, height)
            if note:
                self.notes[note] += 1
            if clamped is not None and image.orient(clamped) not in boxes:
                boxes.append(image.orient(clamped))
        return boxes


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.input.is_file():
        raise DataPrepError(f"{args.input}: missing input file")
    if not args.image_root.is_dir():
        raise DataPrepError(f"{args.image_root}: image root is not a folder")
    converter = VisualCotConverter(args)
    return cli.convert(
        cli.json_records(args.input),
        converter.build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        outputs=[args.input.stem],
        overwrite=args.overwrite,
        notes=converter.notes,
        limit=args.limit,
        desc=VISUAL_COT,
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
