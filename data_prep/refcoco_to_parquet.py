"""Convert RefCOCO / RefCOCO+ / RefCOCOg to veRL parquet grounding rows, one file per split.

Reads either form:
  The original REFER release (--refer-root), the layout the REFER toolkit expects:
    <refer-root>/<dataset>/refs(<split-by>).p   the refs pickle (splits, expressions)
    <refer-root>/<dataset>/instances.json       COCO annotations (boxes, image sizes), read with pycocotools
    <image-root>/<file_name>                    the COCO train2014 images named in instances.json
  Writes <out>/<split>.parquet (train, val, testA, testB / test). A ref whose image_id differs from its
  annotation's is refused; a ref without sentences and a repeated ref (same ref_id, same content) are
  counted as skipped.
  Ground-R1's RefCOCO evaluation JSONL (--jsonl, eval_dataset/RefCOCO_eval_subset_1000.jsonl):
    {"image": "RefCOCO/testB/images/img_1.png", "width", "height", "bboxs": [[x, y, w, h]],
     "dataset": "RefCOCO/testB", "problem": "", "solution": ["expression", ...], "problem_id"}
  Writes <out>/<data set>_<split>.parquet (refcoco_testB, refcoco+_val, ...); images under --image-root.
One row per expression (training can take one sampled expression per ref). Ground truth is [x1, y1, x2, y2]
in original pixels of the image as shown (EXIF orientation applied; the boxes, given in the stored file's
frame, are mapped into it).

  python data_prep/refcoco_to_parquet.py --refer-root ~/refer/data --image-root ~/coco/train2014 \\
      --dataset refcoco --out ~/data/refcoco
  python data_prep/refcoco_to_parquet.py --jsonl RefCOCO_eval_subset_1000.jsonl --image-root ~/ground_r1 \\
      --out ~/data/refcoco_eval
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from verl_ext.data import cli
from verl_ext.data.images import find_in_root, probe_file, resolve_in_root
from verl_ext.data.rows import ImageRef, build_row, grounding_messages
from verl_ext.data.schema import GROUNDING_SCHEMA
from verl_ext.data.validation import (
    BadRecord,
    DataPrepError,
    Skipped,
    check_box_xywh,
    check_int,
    check_prompt_text,
    check_split,
    finite_number,
    optional_text,
    shown,
    source_id,
)
from verl_ext.data_sources import GROUNDING

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
TRAIN = "train"

#: (position of the ref in the pickle, the ref, one of its sentences or None when it has none to give).
Item = tuple[int, Any, Any]
IDS = ("ref_id", "ann_id", "image_id")


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, protocol=False)
    form = p.add_mutually_exclusive_group(required=True)
    form.add_argument("--refer-root", type=Path, help="folder holding <dataset>/refs(<split-by>).p")
    form.add_argument("--jsonl", type=Path, help="Ground-R1's RefCOCO evaluation JSONL (instead of --refer-root)")
    p.add_argument("--image-root", type=Path, required=True, help="COCO train2014 image folder (or the JSONL's)")
    p.add_argument("--dataset", choices=GROUNDING, default="refcoco")
    p.add_argument(
        "--split-by",
        choices=("unc", "umd", "google"),
        default=None,
        help="which refs pickle: default unc for refcoco/refcoco+, umd for refcocog",
    )
    p.add_argument(
        "--train-expressions",
        choices=("all", "one"),
        default="all",
        help="training rows: every expression, or one sampled per ref (seeded); other splits always take all",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --train-expressions one")
    p.add_argument(
        "--zoom",
        choices=sorted(cli.SYSTEM_PROMPTS),
        default=None,
        help="let grounding rows use the zoom tool: tool_agent plus a system prompt in this zoom protocol "
        "(default: single-turn grounding; the tool kwargs are stored either way)",
    )
    return p


def load_refs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataPrepError(f"{path}: missing annotation file (expected <refer-root>/<dataset>/refs(<split-by>).p)")
    try:
        with open(path, "rb") as f:
            refs = pickle.load(f)
    except Exception as e:
        raise DataPrepError(f"{path}: cannot read the refs pickle ({e})") from e
    if not isinstance(refs, list):
        raise DataPrepError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def load_instances(path: Path) -> COCO:
    if not path.is_file():
        raise DataPrepError(f"{path}: missing annotation file (expected <refer-root>/<dataset>/instances.json)")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return COCO(str(path))
    except Exception as e:
        raise DataPrepError(f"{path}: cannot read COCO instances ({e})") from e


def expressions(refs: list[Any], train_one: bool, seed: int) -> Iterator[Item]:
    """(position, ref, sentence): every sentence, or one sampled per training ref.

    A ref that is not a dict or has no list of sentences comes once with sentence None, so that it is
    counted (and named) rather than lost.
    """
    rng = random.Random(seed)
    for k, ref in enumerate(refs):
        sentences = ref.get("sentences") if isinstance(ref, dict) else None
        if not isinstance(sentences, list) or not sentences:
            yield k, ref, None
            continue
        if train_one and ref.get("split") == TRAIN:
            sentences = [rng.choice(sentences)]
        for sentence in sentences:
            yield k, ref, sentence


def split_names(refs: list[Any]) -> set[str]:
    """The splits the refs name (each becomes <split>.parquet)."""
    return {r["split"] for r in refs if isinstance(r, dict) and isinstance(r.get("split"), str)}


class RefcocoConverter:
    """Builds rows from refs, checking each image once (cached by image id)."""

    def __init__(self, args: argparse.Namespace, refs_file: Path, instances_file: Path, coco: COCO) -> None:
        self.args = args
        self.refs_file = refs_file
        self.instances_file = instances_file
        self.coco = coco
        self._images: dict[int, ImageRef | BadRecord] = {}
        self._first: dict[int, tuple[int, Any]] = {}

    def image(self, image_id: int, record: str) -> ImageRef:
        cached = self._images.get(image_id)
        if cached is None:
            try:
                cached = self._probe(image_id, record)
            except BadRecord as e:
                cached = e
            self._images[image_id] = cached
        if isinstance(cached, BadRecord):
            raise BadRecord(cached.source, record, cached.reason, cached.detail)
        return cached

    def _probe(self, image_id: int, record: str) -> ImageRef:
        img = self.coco.imgs.get(image_id)
        if img is None:
            raise BadRecord(self.instances_file, record, "image id missing from instances.json", str(image_id))
        path = resolve_in_root(self.args.image_root, str(img.get("file_name", "")), self.instances_file, record)
        info = probe_file(path, self.instances_file, record)
        given = [finite_number(img.get("width")), finite_number(img.get("height"))]
        if None in given:
            detail = f"width {shown(img.get('width'))}, height {shown(img.get('height'))}"
            raise BadRecord(self.instances_file, record, "malformed image size", detail)
        if given != [info.width, info.height]:
            detail = f"file {info.width}x{info.height}, annotation {given[0]:g}x{given[1]:g}"
            raise BadRecord(path, record, "image size differs from instances.json", detail)
        return ImageRef.of(path, info)

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        position, ref, sentence = item
        if not isinstance(ref, dict):
            raise BadRecord(self.refs_file, f"ref #{position}", "ref is not a dict", type(ref).__name__)
        record = f"ref_id {shown(ref.get('ref_id'))}"
        ids = {key: check_int(ref.get(key), self.refs_file, record, key) for key in IDS}
        self._check_repeat(position, ref, record)
        if sentence is None:
            sentences = ref.get("sentences")
            if sentences is None or sentences == []:
                raise Skipped(self.refs_file, record, "ref without sentences")
            raise BadRecord(self.refs_file, record, "malformed sentences", f"{type(sentences).__name__}")
        if not isinstance(sentence, dict):
            raise BadRecord(self.refs_file, record, "malformed sentence", repr(sentence)[:80])
        record += f" sent_id {shown(sentence.get('sent_id'))}"
        ids["sent_id"] = check_int(sentence.get("sent_id"), self.refs_file, record, "sent_id")
        split = check_split(ref.get("split"), self.refs_file, record)
        text = sentence.get("sent") or sentence.get("raw")
        expression = check_prompt_text(text, self.refs_file, record, "expression")
        ann = self.coco.anns.get(ids["ann_id"])
        if ann is None:
            missing = str(ids["ann_id"])
            raise BadRecord(self.instances_file, record, "annotation missing from instances.json", missing)
        if ann.get("image_id") != ids["image_id"]:
            detail = f"ref image_id {ids['image_id']}, annotation {ids['ann_id']} image_id {ann.get('image_id')!r}"
            raise BadRecord(self.refs_file, record, "ref and annotation name different images", detail)
        image = self.image(ids["image_id"], record)
        width, height = image.stored_size
        box = image.orient(check_box_xywh(ann.get("bbox"), width, height, self.instances_file, record))
        if self.args.embed_images:
            image = image.embedded()
        category_id = ann.get("category_id")
        category = self.coco.cats.get(category_id, {}) if isinstance(category_id, int) else {}
        category = optional_text(category.get("name"), self.instances_file, record, "category")
        extra = {
            "split": split,
            **ids,
            "expression": expression,
            "category": category,
        }
        row = build_row(
            data_source=self.args.dataset,
            messages=grounding_messages(expression, self.args.zoom),
            image=image,
            ability="grounding",
            ground_truth=box,
            extra_info=extra,
            use_tool=self.args.zoom is not None,
        )
        return split, row

    def _check_repeat(self, position: int, ref: dict[str, Any], record: str) -> None:
        """A ref_id seen before: the same ref again is skipped (counted), a different one is refused."""
        first_position, first = self._first.setdefault(ref["ref_id"], (position, ref))
        if first_position == position:
            return
        if first == ref:
            raise Skipped(self.refs_file, record, "duplicate ref")
        raise BadRecord(self.refs_file, record, "ref_id repeated with different content")


class GroundR1Converter:
    """Rows from Ground-R1's RefCOCO JSONL: one per expression of ``solution``, the box from ``bboxs`` (xywh)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def build(self, item: tuple[int, Any, int | None]) -> tuple[str, dict[str, Any]]:
        number, record, k = item
        src, record_name = self.args.jsonl, f"line {number}"
        if isinstance(record, BadRecord):
            raise record
        if not isinstance(record, dict) or not isinstance(record.get("solution"), list) or k is None:
            raise BadRecord(src, record_name, "not a Ground-R1 RefCOCO record", "expected a list of expressions")
        where = f"{record_name} expression {k}"
        data_source, split = data_set_of(record.get("dataset"), src, where)
        expression = check_prompt_text(record["solution"][k], src, where, "expression")
        path = find_in_root(self.args.image_root, str(record.get("image")), src, where)
        image = ImageRef.of(path, probe_file(path, src, where))
        width, height = image.stored_size
        size = record.get("width"), record.get("height")
        if size != (None, None):
            given = [finite_number(v) for v in size]
            if None in given:
                raise BadRecord(src, where, "malformed image size", f"width {shown(size[0])}, height {shown(size[1])}")
            if given != [width, height]:
                detail = f"file {width}x{height}, record {given[0]:g}x{given[1]:g}"
                raise BadRecord(src, where, "image size differs from the record", detail)
        boxes = record.get("bboxs")
        if not isinstance(boxes, list) or len(boxes) != 1:
            raise BadRecord(src, where, "malformed box", f"expected one box in bboxs, got {boxes!r}"[:80])
        box = image.orient(check_box_xywh(boxes[0], width, height, src, where))
        ident = source_id(record.get("problem_id", number), src, where)
        row = build_row(
            data_source=data_source,
            messages=grounding_messages(expression, self.args.zoom),
            image=image.embedded() if self.args.embed_images else image,
            ability="grounding",
            ground_truth=box,
            extra_info={"split": split, "expression": expression, "source_id": ident, "sent_id": k},
            use_tool=self.args.zoom is not None,
        )
        return f"{data_source}_{split}", row


def data_set_of(value: object, source: object, record: object) -> tuple[str, str]:
    """(data source, split) of Ground-R1's ``dataset`` field, e.g. "RefCOCO+/testA" -> ("refcoco+", "testA")."""
    name, _, split = str(value).partition("/")
    if name.lower() not in GROUNDING:
        detail = f"{value!r}: expected RefCOCO, RefCOCO+ or RefCOCOg/<split>"
        raise BadRecord(source, record, "unknown data set", detail)
    return name.lower(), check_split(split, source, record)


def ground_r1_items(path: Path) -> Iterator[tuple[int, Any, int | None]]:
    """(line, record, expression number); a record with no expressions comes once, to be counted."""
    for number, record in cli.json_records(path):
        solution = record.get("solution") if isinstance(record, dict) else None
        if isinstance(solution, list) and solution:
            yield from ((number, record, k) for k in range(len(solution)))
        else:
            yield number, record, None


def ground_r1_main(args: argparse.Namespace) -> cli.Summary:
    if not args.jsonl.is_file():
        raise DataPrepError(f"{args.jsonl}: missing JSONL file")
    names = set()
    for _, record in cli.json_records(args.jsonl):
        try:
            names.add("_".join(data_set_of(record.get("dataset"), args.jsonl, "")))
        except (AttributeError, BadRecord):
            continue
    return cli.convert(
        ground_r1_items(args.jsonl),
        GroundR1Converter(args).build,
        out_dir=args.out,
        schema=GROUNDING_SCHEMA,
        skip_bad=args.skip_bad,
        outputs=names,
        overwrite=args.overwrite,
        limit=args.limit,
        desc="ground-r1 refcoco",
    )


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.image_root.is_dir():
        raise DataPrepError(f"{args.image_root}: image root is not a folder")
    if args.jsonl is not None:
        return ground_r1_main(args)
    split_by = args.split_by or DEFAULT_SPLIT_BY[args.dataset]
    folder = args.refer_root / args.dataset
    refs_file, instances_file = folder / f"refs({split_by}).p", folder / "instances.json"
    refs = load_refs(refs_file)
    coco = load_instances(instances_file)
    train_one = args.train_expressions == "one"
    total = sum(1 for _ in expressions(refs, train_one, args.seed))
    converter = RefcocoConverter(args, refs_file, instances_file, coco)
    return cli.convert(
        expressions(refs, train_one, args.seed),
        converter.build,
        out_dir=args.out,
        schema=GROUNDING_SCHEMA,
        skip_bad=args.skip_bad,
        outputs=split_names(refs),
        overwrite=args.overwrite,
        limit=args.limit,
        total=total,
        desc=f"{args.dataset}({split_by})",
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
