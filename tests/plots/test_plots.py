"""verl_ext.plots on recorded veRL file-logger output: what it reads, aggregates and draws, and damaged lines.

Fixtures (tests/plots/fixtures/README.md says how each was made): ``tiny_cpu/<estimator>/metrics.jsonl``, written
by veRL's file logger in a real 3-step run of examples/run_tiny_cpu.sh, and ``scale_bias/<estimator>_seed<s>.jsonl``,
written through veRL's ``Tracking`` by experiments/scale_bias/run.py --quick.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from verl_ext import plots

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_cpu"
SIM = FIXTURES / "scale_bias"
TRAINER_FIGURES = {
    "critic_score_mean",
    "scale_share",
    "scale_reward_mean",
    "scale_adv_mean",
    "scale_acc",
    "scale_evidence_scale_mean",
}


def raw_series(path: Path, metric: str) -> dict[int, float]:
    """The file's values of one metric, read line by line with json (the oracle for the module's reader)."""
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if isinstance(record["data"].get(metric), int | float):
            out[record["step"]] = float(record["data"][metric])
    return out


def lines_by_label(ax) -> dict[str, np.ndarray]:
    """``{label: xy}`` of an axis's lines, the label without its ``(n=...)`` count."""
    return {line.get_label().split(" (n=")[0]: line.get_xydata() for line in ax.lines}


def test_reader_returns_every_step_of_a_recorded_trainer_run():
    path = TINY / "srpo" / "metrics.jsonl"
    log = plots.read_log(path)
    assert log.damaged == []
    assert sorted(log.steps) == [1, 2, 3]
    assert log.series("critic/score/mean") == raw_series(path, "critic/score/mean")
    assert {"critic/score/mean", "scale/bin0_0-33/share", "actor/pg_loss"} <= log.numeric_metrics()


@pytest.mark.parametrize(
    "band,low,high",
    [
        ("minmax", [1.0, 2.0, 5.0], [3.0, 6.0, 5.0]),
        ("std", [1.0, 2.0, 5.0], [3.0, 6.0, 5.0]),  # two replicas: population std = half the range
    ],
)
def test_aggregate_gives_mean_and_band_over_the_replicas_that_hold_each_step(band, low, high):
    agg = plots.aggregate([{1: 1.0, 2: 2.0}, {1: 3.0, 2: 6.0, 3: 5.0}], band)
    np.testing.assert_array_equal(agg.steps, [1, 2, 3])
    np.testing.assert_allclose(agg.mean, [2.0, 4.0, 5.0])
    np.testing.assert_allclose(agg.low, low)
    np.testing.assert_allclose(agg.high, high)
    np.testing.assert_array_equal(agg.n, [2, 2, 1])


def test_std_band_differs_from_minmax_with_three_replicas():
    series = [{0: 0.0}, {0: 0.0}, {0: 3.0}]
    std = plots.aggregate(series, "std")
    np.testing.assert_allclose([std.low[0], std.high[0]], [1.0 - np.sqrt(2.0), 1.0 + np.sqrt(2.0)])
    mm = plots.aggregate(series, "minmax")
    np.testing.assert_allclose([mm.low[0], mm.high[0]], [0.0, 3.0])


@pytest.mark.parametrize(
    "path,label",
    [
        ("runs/srpo_seed12.jsonl", "srpo"),
        ("runs/grpo-seed3.jsonl", "grpo"),
        ("out/grpo/metrics.jsonl", "grpo"),
        ("out/srpo_seed4/metrics.jsonl", "srpo"),
        ("exp/seed7.jsonl", "seed7"),  # nothing would be left: keep the name
        ("exp/my_run.jsonl", "my_run"),
    ],
)
def test_run_label(path, label):
    assert plots.run_label(Path(path)) == label


def test_trainer_runs_draw_reward_and_every_per_bin_figure(tmp_path, capsys):
    assert plots.main([str(TINY), "--out", str(tmp_path)]) == 0
    written = {p.stem for p in tmp_path.glob("*.png")}
    assert written == TRAINER_FIGURES
    out = capsys.readouterr().out
    assert "2 run(s), labels ['grpo', 'srpo']" in out
    image = imread(tmp_path / "scale_share.png")
    assert image.shape[0] > 200 and image.shape[1] > 600  # three bin panels side by side


def test_drawn_lines_are_the_files_values_and_bin_panels_follow_the_bins():
    groups = {label: [plots.read_log(TINY / label / "metrics.jsonl")] for label in ("srpo", "grpo")}
    spec = next(s for s in plots.plan_figures(groups["srpo"][0].numeric_metrics()) if s.name == "scale_reward_mean")
    assert [title for _, title in spec.panels] == ["bin0_0-33", "bin1_33-67", "bin2_67-100"]
    fig = plots.draw(spec, groups)
    for ax, (metric, _) in zip(fig.axes, spec.panels, strict=False):
        drawn = lines_by_label(ax)
        for label in ("srpo", "grpo"):
            expected = raw_series(TINY / label / "metrics.jsonl", metric)
            if expected:
                np.testing.assert_allclose(drawn[label], sorted(expected.items()))
            else:
                assert label not in drawn
        assert not ax.collections  # one replica per label: no band


def test_seeds_overlay_as_mean_and_min_max_band():
    runs = plots.expand_inputs([SIM])
    assert sorted({label for _, label in runs}) == ["grpo", "srpo"]
    groups: dict[str, list] = {}
    for path, label in runs:
        groups.setdefault(label, []).append(plots.read_log(path))
    metric = "scale/bin0_0-33/policy_share"
    fig = plots.draw(plots.FigureSpec("x", metric, ((metric, metric),)), groups)
    ax = fig.axes[0]
    assert sorted(line.get_label() for line in ax.lines) == ["grpo (n=2)", "srpo (n=2)"]
    for line, band in zip(ax.lines, ax.collections, strict=True):
        label = line.get_label().split(" ")[0]
        per_seed = [raw_series(SIM / f"{label}_seed{s}.jsonl", metric) for s in (0, 1)]
        steps = sorted(per_seed[0])
        values = np.array([[seed[step] for step in steps] for seed in per_seed])
        np.testing.assert_allclose(line.get_xydata(), np.column_stack([steps, values.mean(0)]))
        outline = band.get_paths()[0].vertices
        for step, lo, hi in zip(steps, values.min(0), values.max(0), strict=True):
            at_step = outline[np.isclose(outline[:, 0], step), 1]
            assert np.isclose(at_step, lo).any() and np.isclose(at_step, hi).any()


def test_labels_given_on_the_command_line_group_inputs_as_replicas(tmp_path, capsys):
    args = [str(TINY / "srpo" / "metrics.jsonl"), str(TINY / "grpo" / "metrics.jsonl"), "--label", "tiny", "tiny"]
    assert plots.main([*args, "--out", str(tmp_path), "--metrics", "critic/score/mean"]) == 0
    assert "2 run(s), labels ['tiny']" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["critic_score_mean.png"]
    with pytest.raises(SystemExit) as exc:
        plots.main([*args[:-1], "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "1 labels for 2 inputs" in capsys.readouterr().err


def test_damaged_lines_are_reported_and_the_rest_is_drawn(tmp_path, capsys):
    path = tmp_path / "runs" / "srpo" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    good = (TINY / "srpo" / "metrics.jsonl").read_text()
    lines = good.splitlines()
    # A run killed mid-write, a line of another format, and a NaN that orjson wrote as null.
    damaged = [
        lines[0],
        lines[1][: len(lines[1]) // 2],
        '{"step": 7}',
        lines[2].replace('"critic/score/mean":', '"x":'),
    ]
    damaged.append('{"step": 9, "data": {"critic/score/mean": null}}')
    path.write_text("\n".join(damaged) + "\n")

    assert plots.main([str(tmp_path / "runs"), "--out", str(tmp_path / "png"), "--metrics", "critic/score/mean"]) == 0
    err = capsys.readouterr().err
    assert f"{path}:2: not a veRL file-logger record: JSONDecodeError" in err
    assert f"{path}:3: not a veRL file-logger record: KeyError" in err
    assert err.count("not a veRL file-logger record") == 2
    assert (tmp_path / "png" / "critic_score_mean.png").is_file()

    log = plots.read_log(path)
    expected = raw_series(TINY / "srpo" / "metrics.jsonl", "critic/score/mean")
    assert log.series("critic/score/mean") == {1: expected[1]}  # line 2 lost, line 4 renamed, step 9 null


def test_no_matching_metric_is_an_error_exit(tmp_path, capsys):
    assert plots.main([str(TINY), "--out", str(tmp_path), "--metrics", "nothing/*"]) == 1
    assert "no metric matching" in capsys.readouterr().err


def test_missing_input_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        plots.main([str(tmp_path / "absent.jsonl"), "--out", str(tmp_path)])
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.e2e
def test_module_cli_in_a_fresh_interpreter(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(SIM, runs)
    proc = subprocess.run(
        [sys.executable, "-m", "verl_ext.plots", str(runs), "--out", str(tmp_path / "png"), "--band", "std"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "png" / "scale_policy_share.png").is_file()
    assert "4 run(s), labels ['grpo', 'srpo']" in proc.stdout


def test_the_demo_report_uses_the_same_reader_and_refuses_a_damaged_line(tmp_path):
    from verl_ext.testing.report import read_steps

    path = TINY / "grpo" / "metrics.jsonl"
    assert read_steps(path) == plots.read_log(path).steps
    damaged = tmp_path / "metrics.jsonl"
    damaged.write_text(path.read_text() + '{"step": 4, "data": [1]}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:4: not a veRL file-logger record: TypeError"):
        read_steps(damaged)
