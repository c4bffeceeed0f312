"""The end-to-end experiment's pipeline (experiments/e2e/run.py --quick): data, warm start, the harness before, 2 real
training steps per estimator, the harness on each trained checkpoint, and a report whose numbers are the runs' own.

A few minutes on 2 cores (the warm start is 10 steps, so the numbers mean nothing; the pipeline is what is checked).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from verl_ext.testing.report import read_steps

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e_quick")
    cmd = [sys.executable, str(REPO / "experiments" / "e2e" / "run.py"), "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_each_estimator_trained_and_its_checkpoint_was_evaluated(out: Path) -> None:
    results = json.loads((out / "report" / "results.json").read_text())
    assert sorted(results["runs"]) == ["grpo/seed0", "srpo/seed0"]
    for name, run in results["runs"].items():
        run_dir = out / "runs" / name
        steps = read_steps(run_dir / "metrics.jsonl")
        assert sorted(steps) == [1, 2]
        assert any(key.startswith("scale/bin0_") for key in steps[1]), "the trainer logs per-bin metrics"
        scores = [steps[s]["critic/score/mean"] for s in (1, 2)]
        assert run["reward_first"] == pytest.approx(statistics.mean(scores))
        # The harness evaluated the run's own final checkpoint on the held-out split, not the warm start.
        settings = json.loads((run_dir / "eval" / "run.json").read_text())
        assert settings["actor_rollout_ref.model.path"].endswith(f"{name}/ckpt/global_step_2/actor/huggingface")
        assert settings["data"][0].startswith("test.parquet")
        records = _jsonl(run_dir / "eval" / "trajectories.jsonl")
        assert len(records) == 8 and run["acc"] == pytest.approx(statistics.mean(r["acc"] for r in records))
    before = json.loads((out / "eval_before" / "run.json").read_text())
    assert before["actor_rollout_ref.model.path"] == str(out / "model")
    assert results["before"]["n"] == 8


def test_the_report_shows_every_run_and_the_plots(out: Path) -> None:
    table = (out / "report" / "table.md").read_text()
    for row in ("| srpo | 1 |", "| grpo | 1 |", "| srpo/seed0 | 2 |", "| grpo/seed0 | 2 |"):
        assert row in table
    for name in ("critic_score_mean.png", "scale_share.png", "scale_adv_mean.png"):
        with Image.open(out / "report" / name) as image:
            assert image.format == "PNG" and image.width > 300
