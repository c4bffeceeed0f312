"""Convert RefCOCO / RefCOCO+ / RefCOCOg (the original REFER release) to veRL parquet, one file per split.

Needs the layout the REFER toolkit expects:
  <refer-root>/<dataset>/refs(<split-by>).p   the refs pickle (splits, expressions)
  <refer-root>/<dataset>/instances.json       COCO annotations (boxes, image sizes), read with pycocotools
  <image-root>/<file_name>                    the COCO train2014 images named in instances.json
Writes <out>/<split>.parquet (train, val, testA, testB / test): one row per expression (training can take
one sampled expression per ref). Ground truth is [x1, y1, x2, y2] in original pixels.

  python data_prep/refcoco_to_parquet.py --refer-root ~/refer/data --image-root ~/coco/train2014 \\
      --dataset refcoco --out ~/data/refcoco
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
from verl_ext.data.images import probe_file, resolve_in_root
from verl_ext.data.rows import ImageRef, build_row, grounding_messages
from verl_ext.data.schema import GROUNDING_SCHEMA
from verl_ext.data.validation import BadRecord, DataPrepError, check_box_xywh, check_text
from verl_ext.data_sources import GROUNDING

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
TRAIN = "train"

Item = tuple[dict[str, Any], dict[str, Any]]


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, protocol=False)
    p.add_argument("--refer-root", type=Path, required=True, help="folder holding <dataset>/refs(<split-by>).p")
    p.add_argument("--image-root", type=Path, required=True, help="COCO train2014 image folder")
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


def expressions(refs: list[dict[str, Any]], train_one: bool, seed: int) -> Iterator[Item]:
    """(ref, sentence) pairs: every sentence, or one sampled per training ref."""
    rng = random.Random(seed)
    for ref in refs:
        sentences = list(ref.get("sentences") or [])
        if train_one and ref.get("split") == TRAIN and sentences:
            sentences = [rng.choice(sentences)]
        for sentence in sentences:
            yield ref, sentence


class RefcocoConverter:
    """Builds rows from refs, checking each image once (cached by image id)."""

    def __init__(self, args: argparse.Namespace, refs_file: Path, instances_file: Path, coco: COCO) -> None:
        self.args = args
        self.refs_file = refs_file
        self.instances_file = instances_file
        self.coco = coco
        self._images: dict[int, ImageRef | BadRecord] = {}

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
        if (info.width, info.height) != (img.get("width"), img.get("height")):
            raise BadRecord(
                path,
                record,
                "image size differs from instances.json",
                f"file {info.width}x{info.height}, annotation {img.get('width')}x{img.get('height')}",
            )
        return ImageRef(path, info.width, info.height)

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        ref, sentence = item
        record = f"ref_id {ref.get('ref_id')} sent_id {sentence.get('sent_id')}"
        split = check_text(ref.get("split"), self.refs_file, record, "split")
        expression = check_text(sentence.get("sent") or sentence.get("raw"), self.refs_file, record, "expression")
        ann = self.coco.anns.get(ref.get("ann_id"))
        if ann is None:
            missing = str(ref.get("ann_id"))
            raise BadRecord(self.instances_file, record, "annotation missing from instances.json", missing)
        image = self.image(ref.get("image_id"), record)
        box = check_box_xywh(ann.get("bbox"), image.width, image.height, self.instances_file, record)
        if self.args.embed_images:
            image = image.embedded()
        category = self.coco.cats.get(ann.get("category_id"), {}).get("name")
        ids = {key: ref.get(key) for key in ("ref_id", "ann_id", "image_id")} | {"sent_id": sentence.get("sent_id")}
        for key, value in ids.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadRecord(self.refs_file, record, f"malformed {key}", repr(value))
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


def main(args: argparse.Namespace) -> cli.Summary:
    split_by = args.split_by or DEFAULT_SPLIT_BY[args.dataset]
    folder = args.refer_root / args.dataset
    refs_file, instances_file = folder / f"refs({split_by}).p", folder / "instances.json"
    refs = load_refs(refs_file)
    coco = load_instances(instances_file)
    if not args.image_root.is_dir():
        raise DataPrepError(f"{args.image_root}: image root is not a folder")
    train_one = args.train_expressions == "one"
    total = sum(1 for _ in expressions(refs, train_one, args.seed))
    converter = RefcocoConverter(args, refs_file, instances_file, coco)
    return cli.convert(
        expressions(refs, train_one, args.seed),
        converter.build,
        out_dir=args.out,
        schema=GROUNDING_SCHEMA,
        skip_bad=args.skip_bad,
        limit=args.limit,
        total=total,
        desc=f"{args.dataset}({split_by})",
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
