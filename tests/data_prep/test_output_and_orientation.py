"""Writing into an existing --out, and EXIF-oriented images from conversion through the dataset hook."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from dp_fixtures import hook_config, hr_bench_records, jpeg_bytes, read_rows, run_main, write_refcoco, write_tsv

from verl_ext.data.dataset import GroundR1Dataset
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_processor


def refcoco(paths: dict[str, Path], out: Path, *extra: object, check: bool = True):
    args = ("--refer-root", paths["refer"], "--image-root", paths["images"], "--out", out)
    return run_main("refcoco_to_parquet.py", *args, *extra, check=check)


def dead_pid() -> int:
    """The id of a process that has ended (its temporaries are stale)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_earlier_outputs_are_refused_unless_overwrite_and_stale_temporaries_cleaned(tmp_path: Path) -> None:
    paths = write_refcoco(tmp_path)
    out = tmp_path / "out"
    refcoco(paths, out)
    full = sorted(p.name for p in out.glob("*.parquet"))
    assert full == ["testA.parquet", "testB.parquet", "train.parquet", "val.parquet"]
    proc = refcoco(paths, out, "--limit", "3", check=False)
    assert proc.returncode == 2 and "holds outputs of an earlier run" in proc.stderr and "--overwrite" in proc.stderr
    assert sorted(p.name for p in out.glob("*.parquet")) == full and len(read_rows(out / "train.parquet")) == 4
    stale, live = out / f".val.parquet.tmp-{dead_pid()}", out / f".train.parquet.tmp-{os.getppid()}"
    stale.write_bytes(b"half a parquet")
    live.write_bytes(b"another run, still writing")
    proc = refcoco(paths, out, "--limit", "3", "--overwrite")
    assert sorted(p.name for p in out.glob("*.parquet")) == ["train.parquet"]  # no old val/testA/testB beside it
    assert len(read_rows(out / "train.parquet")) == 3
    assert not stale.exists() and live.exists()
    proc = refcoco(paths, out / "train.parquet", check=False)
    assert proc.returncode == 2 and f"--out {out / 'train.parquet'}: is a file, not a folder" in proc.stderr


def test_a_failed_run_leaves_nothing_and_the_next_one_needs_no_overwrite(tmp_path: Path) -> None:
    records = hr_bench_records(rows=3)
    records[2]["image"] = "!!not-base64!!"
    tsv = tmp_path / "hr_bench_4k.tsv"
    write_tsv(tsv, records)
    out = tmp_path / "out"
    assert run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", out, check=False).returncode == 2
    assert list(out.iterdir()) == []  # the images decoded before the failure went with it
    proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", out, "--skip-bad")
    assert "records read 3 = rows written 2 + records skipped 1" in proc.stdout
    assert len(list((out / "hr_bench_4k_images").iterdir())) == 1  # rows 0 and 1 share their image


@pytest.fixture(scope="module")
def processor():
    return build_processor()


def load(parquet: Path, tmp_path: Path, processor) -> list[dict]:
    cfg = hook_config(tmp_path, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    ds = GroundR1Dataset(str(parquet), processor.tokenizer, cfg, processor=processor)
    return [ds[k] for k in range(len(ds))]


def shown(row: dict) -> np.ndarray:
    (image,) = [c["image"] for m in row["raw_prompt"] for c in m["content"] if c["type"] == "image"]
    return np.asarray(image.convert("RGB"), dtype=float)


def assert_marks(pixels: np.ndarray, box: list[float]) -> None:
    """The green mark fills ``box`` of the shown image and nothing around it (JPEG edges allowed 2 px)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = pixels[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
    assert inside[..., 1].mean() > 200 and inside[..., 0].mean() < 60
    ring = np.ones(pixels.shape[:2], bool)
    ring[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = False
    assert pixels[ring][:, 1].max() < 100


def test_exif_rotated_jpeg_rows_load_and_boxes_land_on_the_shown_pixels(tmp_path: Path, processor) -> None:
    # RefCOCO: image 102 is stored 80x56 with orientation 6 (shown 56x80); its annotation [10, 2, 30, 40] (xywh)
    # is in the stored frame. Shown frame: x = 56 - y, y = x  ->  [14, 10, 54, 40].
    paths = write_refcoco(tmp_path)
    image = paths["images"] / "COCO_train2014_000000000102.jpg"
    image.write_bytes(jpeg_bytes(80, 56, orientation=6, mark=[10, 2, 40, 42]))
    refcoco(paths, tmp_path / "ref", "--zoom", "box")
    rows = load(tmp_path / "ref" / "val.parquet", tmp_path, processor)
    assert len(rows) == 2
    for row in rows:
        info = row["extra_info"]
        assert (info["image_width"], info["image_height"]) == (56, 80)
        assert row["reward_model"]["ground_truth"] == [14.0, 10.0, 54.0, 40.0]
        assert_marks(shown(row), row["reward_model"]["ground_truth"])
    # Visual-CoT: stored 100x80 with orientation 3 (turned 180 degrees); evidence [10, 8, 50, 40] -> [50, 40, 90, 72].
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1.jpg").write_bytes(jpeg_bytes(100, 80, orientation=3, mark=[10, 8, 50, 40]))
    record = {"image": "1.jpg", "question": "What is green?", "answer": "a box", "bboxs": [[10, 8, 50, 40]]}
    (tmp_path / "vc.jsonl").write_text(json.dumps(record) + "\n")
    run_main(
        "visual_cot_to_parquet.py",
        "--input",
        tmp_path / "vc.jsonl",
        "--image-root",
        tmp_path / "img",
        "--out",
        tmp_path / "vc",
    )
    (row,) = load(tmp_path / "vc" / "vc.parquet", tmp_path, processor)
    assert (row["extra_info"]["image_width"], row["extra_info"]["image_height"]) == (100, 80)
    assert row["extra_info"]["evidence_boxes"] == [[50.0, 40.0, 90.0, 72.0]]
    assert_marks(shown(row), row["extra_info"]["evidence_boxes"][0])
