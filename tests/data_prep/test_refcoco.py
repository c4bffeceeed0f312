"""RefCOCO converter, run as a user would, on a REFER-layout fixture."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from dp_fixtures import ANNS, IMAGES, REFS, read_rows, run_cli, run_main, write_refcoco

from verl_ext.geometry import xywh_to_xyxy

SCRIPT = "refcoco_to_parquet.py"


def convert(paths: dict[str, Path], out: Path, *extra: object, check: bool = True, subprocess: bool = False):
    """The CLI with the fixture's folders: in this process by default, as a subprocess when asked."""
    run = run_cli if subprocess else run_main
    return run(
        SCRIPT, "--refer-root", paths["refer"], "--image-root", paths["images"], "--out", out, *extra, check=check
    )


def test_splits_expressions_and_boxes_round_trip(refcoco: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = convert(refcoco, out, subprocess=True)
    expected: dict[str, list[tuple[int, int, str]]] = {}
    for ref_id, _, _, split, sents in REFS:
        expected.setdefault(split, []).extend((ref_id, sid, text) for sid, text in sents)
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(f"{s}.parquet" for s in expected)
    boxes = {ann_id: list(xywh_to_xyxy(b)) for ann_id, _, _, b in ANNS}
    sizes = {i: (w, h) for i, w, h in IMAGES}
    for split, exprs in expected.items():
        rows = read_rows(out / f"{split}.parquet")
        assert [
            (r["extra_info"]["ref_id"], r["extra_info"]["sent_id"], r["extra_info"]["expression"]) for r in rows
        ] == exprs
        for k, row in enumerate(rows):
            info = row["extra_info"]
            assert row["data_source"] == "refcoco" and row["agent_name"] == "single_turn_agent"
            assert info["index"] == k and info["split"] == split
            assert row["reward_model"] == {"style": "rule", "ground_truth": boxes[info["ann_id"]]}
            assert (info["image_width"], info["image_height"]) == sizes[info["image_id"]]
            assert f'"{info["expression"]}"' in row["prompt"][0]["content"]
            assert (
                row["prompt"][0]["content"].count("<image>") == 1 and "{resized_width}" in row["prompt"][0]["content"]
            )
            path = row["images"][0]["path"]
            assert row["images"][0]["bytes"] is None and Path(path).is_file()
            assert info["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"]["image_path"] == path
    assert f"wrote {len(expected['val'])} rows to {out / 'val.parquet'}" in proc.stdout
    assert "records read 9 = rows written 9 + records skipped 0" in proc.stdout


def test_train_one_expression_per_ref_is_seeded(refcoco: dict[str, Path], tmp_path: Path) -> None:
    picks = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        convert(refcoco, out, "--train-expressions", "one", "--seed", "3")
        rows = read_rows(out / "train.parquet")
        assert [r["extra_info"]["ref_id"] for r in rows] == [1, 2]
        assert len(read_rows(out / "val.parquet")) == 2  # evaluation splits keep every expression
        picks.append([r["extra_info"]["sent_id"] for r in rows])
    assert picks[0] == picks[1] and picks[0][0] in (11, 12, 13)


def test_embed_images_and_zoom(refcoco: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(refcoco, out, "--embed-images", "--zoom", "hermes", "--limit", "2")
    rows = read_rows(out / "train.parquet")
    assert len(rows) == 2
    data = (refcoco["images"] / "COCO_train2014_000000000101.jpg").read_bytes()
    assert rows[0]["images"][0]["bytes"] == data
    assert rows[0]["extra_info"]["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"] == {
        "image_path": None,
        "image_bytes": data,
    }
    assert rows[0]["agent_name"] == "ground_r1_tool_agent" and rows[0]["prompt"][0]["role"] == "system"
    assert "tool_call" in rows[0]["prompt"][0]["content"]


def _break(paths: dict[str, Path], kind: str) -> tuple[str, str]:
    """Damage the fixture in one way; returns (text the error must contain, skip reason)."""
    folder = paths["refs"].parent
    if kind == "missing image":
        (paths["images"] / "COCO_train2014_000000000103.jpg").unlink()
        return "COCO_train2014_000000000103.jpg", "missing image"
    if kind == "truncated image":
        f = paths["images"] / "COCO_train2014_000000000103.jpg"
        f.write_bytes(f.read_bytes()[:-200])
        return "ref_id 4 sent_id 41", "truncated image"
    if kind == "unreadable image":
        (paths["images"] / "COCO_train2014_000000000103.jpg").write_bytes(b"not an image at all")
        return "ref_id 4 sent_id 41", "unreadable image"
    instances = json.loads((folder / "instances.json").read_text())
    if kind == "box outside the image":
        instances["annotations"][2]["bbox"] = [10.0, 10.0, 56.0, 72.0]
    elif kind == "box with zero area":
        instances["annotations"][2]["bbox"] = [10.0, 10.0, 0.0, 5.0]
    elif kind == "image path escapes the image root":
        instances["images"][2]["file_name"] = "../refer/refcoco/instances.json"
    (folder / "instances.json").write_text(json.dumps(instances))
    return "ref_id 4 sent_id 41", kind


BAD = [
    "missing image",
    "truncated image",
    "unreadable image",
    "box outside the image",
    "box with zero area",
    "image path escapes the image root",
]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_stops_with_its_message_or_is_counted(kind: str, tmp_path: Path) -> None:
    paths = write_refcoco(tmp_path)
    needle, reason = _break(paths, kind)
    out = tmp_path / "out"
    proc = convert(paths, out, check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr and reason in proc.stderr and "--skip-bad" in proc.stderr
    assert not list(out.glob("*.parquet")) and not list(out.glob(".*tmp*"))  # no half-written output
    proc = convert(paths, out, "--skip-bad")
    assert f"skipped 1 records ({reason}: 1)" in proc.stdout  # image 103 holds one expression (ref 4)
    assert "records read 9 = rows written 8 + records skipped 1" in proc.stdout
    assert not (out / "testA.parquet").exists()
    assert sum(len(read_rows(p)) for p in out.glob("*.parquet")) == 8


def test_missing_annotation_file_is_named(refcoco: dict[str, Path], tmp_path: Path) -> None:
    refcoco["refs"].unlink()
    proc = convert(refcoco, tmp_path / "out", check=False)
    assert proc.returncode == 2 and str(refcoco["refs"]) in proc.stderr and "missing annotation file" in proc.stderr
    proc = convert(refcoco, tmp_path / "out", "--dataset", "refcocog", check=False)
    assert "refcocog/refs(umd).p" in proc.stderr  # refcocog defaults to the umd split


def test_ref_with_unknown_annotation_is_reported(refcoco: dict[str, Path], tmp_path: Path) -> None:
    refs = pickle.loads(refcoco["refs"].read_bytes())
    refs[0]["ann_id"] = 9999
    refcoco["refs"].write_bytes(pickle.dumps(refs))
    proc = convert(refcoco, tmp_path / "out", "--skip-bad")
    assert "annotation missing from instances.json: 3" in proc.stdout
    assert "records read 9 = rows written 6 + records skipped 3" in proc.stdout
