"""The converters' output through veRL's own RLHFDataset, and the hook that fills the resized frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from dp_fixtures import hook_config, read_rows, run_main, write_hr_bench
from verl.utils.dataset.rl_dataset import RLHFDataset, get_dataset_class

from verl_ext.data.dataset import GroundR1Dataset
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_processor

HOOK = {"path": "pkg://verl_ext.data.dataset", "name": "GroundR1Dataset"}


@pytest.fixture(scope="module")
def processor():
    return build_processor()


@pytest.fixture
def refcoco_out(refcoco: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    run_main(
        "refcoco_to_parquet.py",
        "--refer-root",
        refcoco["refer"],
        "--image-root",
        refcoco["images"],
        "--out",
        out,
        "--zoom",
        "box",
    )
    return out


def test_verl_rlhf_dataset_reads_the_rows_with_their_image(refcoco_out: Path, tmp_path: Path, processor) -> None:
    ds = RLHFDataset(str(refcoco_out / "val.parquet"), processor.tokenizer, hook_config(tmp_path), processor=processor)
    source = read_rows(refcoco_out / "val.parquet")
    assert len(ds) == len(source) == 2
    for k, src in enumerate(source):
        row = ds[k]
        images = [c["image"] for m in row["raw_prompt"] for c in m["content"] if c["type"] == "image"]
        assert len(images) == 1 and images[0].size == (80, 56)
        assert row["reward_model"]["ground_truth"] == src["reward_model"]["ground_truth"] == [10.0, 2.0, 40.0, 42.0]
        assert row["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"]["image_path"] == src["images"][0]["path"]


@pytest.mark.parametrize("max_pixels", [16 * 28 * 28, TINY_MAX_PIXELS])
def test_hook_frame_equals_what_the_processor_produces(
    refcoco_out: Path, tmp_path: Path, processor, max_pixels: int
) -> None:
    cfg = hook_config(tmp_path, min_pixels=TINY_MIN_PIXELS, max_pixels=max_pixels, custom_cls=HOOK)
    cls = get_dataset_class(cfg)
    assert cls is GroundR1Dataset
    write_hr_bench(tmp_path / "hr_bench_4k.tsv", rows=2, width=400, height=300)
    run_main("hr_bench_to_parquet.py", "--tsv", tmp_path / "hr_bench_4k.tsv", "--out", tmp_path / "hr")
    files = [
        [str(refcoco_out / f"{s}.parquet") for s in ("train", "testA")],
        str(tmp_path / "hr" / "hr_bench_4k.parquet"),
    ]
    rows = [
        ds[k] for f in files for ds in [cls(f, processor.tokenizer, cfg, processor=processor)] for k in range(len(ds))
    ]
    frames = set()
    for row in rows:
        info = row["extra_info"]
        rw, rh = info["resized_width"], info["resized_height"]
        frames.add((info["image_width"], info["image_height"], rw, rh))
        assert (info["min_pixels"], info["max_pixels"]) == (TINY_MIN_PIXELS, max_pixels)
        create = row["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"]
        assert create["min_pixels"] == TINY_MIN_PIXELS and create["max_pixels"] == max_pixels
        assert "image_bytes" not in create and None not in info.values()  # null schema fields dropped
        text = " ".join(c["text"] for m in row["raw_prompt"] for c in m["content"] if c["type"] == "text")
        assert f"{rw}x{rh} pixels" in text and "{resized_width}" not in text
        images, _, _ = cls._process_multi_modal_info(row["raw_prompt"], 14, cfg)
        prompt = processor.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
        grid = processor(text=[prompt], images=images, return_tensors="pt")["image_grid_thw"][0].tolist()
        assert [grid[2] * 14, grid[1] * 14] == [rw, rh]
    # Sides that are not multiples of 28, and a 400x300 image scaled down to the pixel budget.
    assert len(frames) == 4 and all((w, h) != (rw, rh) for w, h, rw, rh in frames)
    assert all(rw * rh <= max_pixels for _, _, rw, rh in frames)
    assert {(rw, rh) for w, _, rw, rh in frames if w == 400} == {
        (112, 84) if max_pixels < TINY_MAX_PIXELS else (252, 168)
    }


def test_hook_refuses_bounds_the_processor_would_undo(refcoco_out: Path, tmp_path: Path, processor) -> None:
    cfg = hook_config(tmp_path, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS * 4)
    with pytest.raises(ValueError, match="outside the processor's own bounds"):
        GroundR1Dataset(str(refcoco_out / "val.parquet"), processor.tokenizer, cfg, processor=processor)


@pytest.mark.parametrize(
    "bounds,match",
    [({"max_pixels": TINY_MAX_PIXELS}, "data.min_pixels must be a positive integer"), ({}, "data.min_pixels")],
)
def test_hook_never_guesses_pixel_bounds(refcoco_out: Path, tmp_path: Path, processor, bounds, match) -> None:
    with pytest.raises(ValueError, match=match):
        GroundR1Dataset(
            str(refcoco_out / "val.parquet"), processor.tokenizer, hook_config(tmp_path, **bounds), processor
        )
