"""The hf back end: the project's CPU rollout server generates with a tiny Qwen2.5-VL, through the same entrypoint
a user runs (``python -m recipe.ground_r1.main_eval``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from eval_fixtures import REPO, read_jsonl, vstar_parquet

from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_tiny_qwen25vl

pytestmark = pytest.mark.e2e  # a fresh interpreter running the entrypoint with a tiny model


def test_hf_backend_evaluates_rows_end_to_end(tmp_path):
    model = build_tiny_qwen25vl(tmp_path / "model", with_model=True, seed=0)
    data = vstar_parquet(tmp_path)
    out = tmp_path / "out"
    args = [
        f"actor_rollout_ref.model.path={model}",
        f"data.val_files=[{data}]",
        f"data.min_pixels={TINY_MIN_PIXELS}",
        f"data.max_pixels={TINY_MAX_PIXELS}",
        "data.max_prompt_length=512",
        "data.max_response_length=48",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "eval.backend=hf",
        "eval.limit=2",
        f"eval.out_dir={out}",
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "recipe.ground_r1.main_eval", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = read_jsonl(out / "trajectories.jsonl")
    assert sorted(r["position"] for r in records) == [0, 1]
    for record in records:
        assert record["failed"] is None
        assert record["turns"][0]["role"] == "assistant" and record["turns"][0]["text"]
        assert record["resized_width"] == 112 and record["resized_height"] == 84  # 120x90 under the tiny bounds
        assert set(record) >= {"score", "acc", "format", "iou", "evidence_scale", "num_zooms"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vstar/n"] == 2 and summary["vstar/failed"] == 0
    assert summary["vstar/acc"] == sum(r["acc"] for r in records) / 2
    assert "## vstar" in proc.stdout  # the table is printed at the end
