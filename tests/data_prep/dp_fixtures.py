"""Writers of fixtures in the real source formats (drawn on the fly) and a runner for the converter CLIs."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]


def jpeg_bytes(width: int, height: int, seed: int = 0, orientation: int = 1, mark: list[int] | None = None) -> bytes:
    """A small JPEG with a drawn rectangle, so images differ by seed.

    ``orientation`` is written as the EXIF orientation tag (the pixels are stored unturned, as cameras do);
    ``mark`` paints ``[x1, y1, x2, y2)`` of the stored pixels pure green, to find a box on the shown image.
    """
    im = Image.new("RGB", (width, height), (30 + seed * 7 % 200, 90, 160))
    ImageDraw.Draw(im).rectangle([width // 4, height // 4, width // 2, height // 2], fill=(250, 200, seed % 255))
    if mark is not None:
        im = Image.new("RGB", (width, height), (0, 0, 0))
        ImageDraw.Draw(im).rectangle([mark[0], mark[1], mark[2] - 1, mark[3] - 1], fill=(0, 255, 0))
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def run_cli(script: str, *args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python data_prep/<script>`` as a user would."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "data_prep" / script), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Result:
    """What a CLI run left: exit status and its output, like ``subprocess.CompletedProcess``."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


_SCRIPTS: dict[str, Any] = {}


def run_main(script: str, *args: object, check: bool = True) -> Result:
    """Run a converter's real entry point (``cli.run(build_parser(), main)``) in this process: the fast path."""
    if script not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(f"data_prep_{Path(script).stem}", REPO / "data_prep" / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SCRIPTS[script] = module
    module = _SCRIPTS[script]
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.cli.run(module.build_parser(), module.main, [str(a) for a in args])
        except SystemExit as e:
            code = int(e.code or 0)
    result = Result(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} failed ({code}):\n{result.stdout}\n{result.stderr}")
    return result


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


# (image_id, width, height); ann: (ann_id, image_id, category_id, [x, y, w, h])
IMAGES = [(101, 64, 48), (102, 80, 56), (103, 56, 72)]
ANNS = [
    (1001, 101, 1, [4.0, 6.0, 20.5, 18.0]),
    (1002, 102, 2, [10.0, 2.0, 30.0, 40.0]),
    (1003, 103, 1, [0.0, 0.0, 56.0, 72.0]),
]
# (ref_id, ann_id, image_id, split, sentences[(sent_id, sent)])
REFS = [
    (1, 1001, 101, "train", [(11, "man on left"), (12, "left guy"), (13, "person in red")]),
    (2, 1002, 102, "train", [(21, "blue car")]),
    (3, 1002, 102, "val", [(31, "the car"), (32, "car in the middle")]),
    (4, 1003, 103, "testA", [(41, "whole picture")]),
    (5, 1001, 101, "testB", [(51, 'sign saying "{stop}"'), (52, "a thing")]),
]


def write_refcoco(root: Path, dataset: str = "refcoco", split_by: str = "unc") -> dict[str, Path]:
    """A REFER layout: <root>/refer/<dataset>/refs(<split_by>).p + instances.json, images in <root>/images."""
    refer, images = root / "refer", root / "images"
    (refer / dataset).mkdir(parents=True)
    images.mkdir()
    for image_id, w, h in IMAGES:
        (images / f"COCO_train2014_{image_id:012d}.jpg").write_bytes(jpeg_bytes(w, h, image_id))
    instances = {
        "images": [
            {"id": i, "width": w, "height": h, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i, w, h in IMAGES
        ],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for a, i, c, b in ANNS
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}],
    }
    (refer / dataset / "instances.json").write_text(json.dumps(instances))
    refs = [
        {
            "ref_id": r,
            "ann_id": a,
            "image_id": i,
            "category_id": 1,
            "split": s,
            "file_name": f"COCO_train2014_{i:012d}_{a}.jpg",
            "sent_ids": [sid for sid, _ in sents],
            "sentences": [{"raw": t, "sent": t, "sent_id": sid, "tokens": t.split()} for sid, t in sents],
        }
        for r, a, i, s, sents in REFS
    ]
    with open(refer / dataset / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f)
    return {"refer": refer, "images": images, "refs": refer / dataset / f"refs({split_by}).p"}


def hr_bench_records(rows: int = 4, width: int = 96, height: int = 64) -> list[dict[str, Any]]:
    """HR-Bench records: index, question, A-D, answer, category, cycle_category, image (base64 JPEG)."""
    return [
        {
            "index": k,
            "question": f"What colour is object {k}?",
            "A": "red",
            "B": "blue",
            "C": "green",
            "D": "white",
            "answer": "ABCD"[k % 4],
            "category": "single" if k % 2 == 0 else "cross",
            "cycle_category": f"cycle_{k // 2}",
            "image": base64.b64encode(jpeg_bytes(width, height, k // 2)).decode(),
        }
        for k in range(rows)
    ]


def write_tsv(path: Path, records: list[dict[str, Any]], **to_csv: Any) -> None:
    """Write records as VLMEvalKit does: ``pandas.DataFrame.to_csv(sep="\\t", index=False)`` (quoting as given)."""
    import pandas as pd

    pd.DataFrame(records).to_csv(path, sep="\t", index=False, **to_csv)


def write_hr_bench(path: Path, rows: int = 4, width: int = 96, height: int = 64) -> list[dict[str, Any]]:
    """An HR-Bench TSV written by pandas with its default quoting; returns the records."""
    records = hr_bench_records(rows, width, height)
    write_tsv(path, records)
    return records


def write_vstar(root: Path) -> dict[str, list[str]]:
    """A V* Bench folder: <category>/<name>.jpg + <name>.json with the correct option first."""
    made: dict[str, list[str]] = {}
    for c, category in enumerate(("direct_attributes", "relative_position")):
        (root / category).mkdir(parents=True)
        for k in range(2):
            name = f"sa_{c}{k}"
            (root / category / f"{name}.jpg").write_bytes(jpeg_bytes(120, 90, c * 10 + k))
            options = ["The colour is red.", "The colour is blue.", "The colour is green.", "The colour is black."]
            if category == "relative_position":
                options = ["left", "right"]
            meta = {
                "target_object": ["cup"],
                "bbox": [[10, 12, 30, 20]],
                "question": f"What about the cup {k}?",
                "options": options,
            }
            (root / category / f"{name}.json").write_text(json.dumps(meta))
            made[f"{category}/{name}"] = options
    return made


#: DeepEyes' instruction, appended to every question of its released files.
DEEPEYES_INSTRUCTION = (
    "\nThink first, call **image_zoom_in_tool** if needed, then answer. Format strictly as:  <think>...</think>  "
    "<tool_call>...</tool_call> (if tools needed)  <answer>...</answer> "
)


def write_deepeyes(path: Path) -> list[dict[str, Any]]:
    """A DeepEyes RL parquet: verl columns with embedded image bytes and the question in extra_info."""
    image_struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = []
    gts = ["B", "yes", "3.5", "a red umbrella"]
    for k, gt in enumerate(gts):
        q = f"What is shown {k}?" + ("\nA. cat\nB. dog\nC. bird" if gt == "B" else "")
        rows.append(
            {
                "data_source": "chart" if k % 2 else "vstar",
                "prompt": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"<image>\n{q}\nThink first, call image_zoom_in_tool if needed."},
                ],
                "images": [{"bytes": jpeg_bytes(70, 50, k), "path": None}],
                "ability": "vqa",
                "env_name": "visual_toolbox_v2",
                "reward_model": {"ground_truth": gt, "style": "model"},
                "extra_info": {"answer": gt, "index": str(k), "question": q, "split": "train"},
            }
        )
    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(image_struct)),
            ("ability", pa.string()),
            ("env_name", pa.string()),
            ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
            (
                "extra_info",
                pa.struct([(k, pa.string()) for k in ("answer", "index", "question", "split")]),
            ),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return rows


def hook_config(tmp_path: Path, **data: Any) -> DictConfig:
    """A ``data`` config for veRL's RLHFDataset / the dataset hook in tests.

    No length filter: veRL's filter forks a datasets process pool (OmegaConf's get() turns a null worker count into
    its default of 1), which deadlocks in a pytest process that already runs threads.
    """
    return OmegaConf.create(
        {"max_prompt_length": 4096, "filter_overlong_prompts": False, "cache_dir": str(tmp_path / "c"), **data}
    )
