"""The estimator-level scale-bias experiment (experiments/scale_bias/run.py): its model, its use of veRL's
estimators, and its ``--quick`` run end to end (the CI check that the pipeline produces every table and plot)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from verl_ext import plots
from verl_ext.algorithms.srpo import scale_bins

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "scale_bias" / "run.py"


def load_experiment():
    """The experiment script as a module (it lives outside the package, as benchmarks do)."""
    spec = importlib.util.spec_from_file_location("scale_bias_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


sb = load_experiment()


def batch(num: int, seed: int, probs=(0.5, 0.3, 0.2), precision=(0.3, 0.6, 0.9)):
    """Rollouts of one (setting, seed) pair from the experiment's sampler: (bins, precise, reward, scale)."""
    table = sb.RewardModel().table(3)[None]
    p = torch.tensor([[probs]], dtype=torch.float64)
    q = torch.tensor([[precision]], dtype=torch.float64)
    u = torch.rand(1, 1, num, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return sb.sample(p, q, table, u), table


def test_reward_table_interpolates_from_small_to_large():
    table = sb.RewardModel(p_small_precise=0.9, p_small_imprecise=0.1, p_large=0.6).table(3)
    torch.testing.assert_close(table, torch.tensor([[0.1, 0.9], [0.35, 0.75], [0.6, 0.6]], dtype=torch.float64))


def test_sampler_draws_bins_precision_and_rewards_with_the_stated_probabilities():
    n = 200_000
    (bins, precise, reward, scale), table = batch(n, seed=0)
    bins, precise, reward = bins.flatten(), precise.flatten(), reward.flatten()
    tol = 4 * np.sqrt(0.25 / 2000)  # 4 sigma of a frequency estimated from >= 2000 draws
    for k, (pk, qk) in enumerate(zip((0.5, 0.3, 0.2), (0.3, 0.6, 0.9), strict=True)):
        in_bin = bins == k
        assert abs(in_bin.double().mean().item() - pk) < 4 * np.sqrt(pk / n)
        assert abs(precise[in_bin].double().mean().item() - qk) < tol
        for prec in (0, 1):
            cell = in_bin & (precise == prec)
            assert abs(reward[cell].mean().item() - table[0, k, prec].item()) < tol
    # The evidence scale lies inside the chosen bin as SRPO bins it.
    torch.testing.assert_close(scale_bins(scale.flatten(), 3), bins)


def test_policy_gradient_is_the_gradient_of_the_reinforce_objective():
    (bins, precise, _, _), _ = batch(64, seed=1)
    adv = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bin_logits = torch.tensor([[[0.3, -0.2, 0.1]]], dtype=torch.float64, requires_grad=True)
    prec_logits = torch.tensor([[[-1.0, 0.5, 2.0]]], dtype=torch.float64, requires_grad=True)
    log_pi_bin = bin_logits.log_softmax(-1).gather(-1, bins)
    q = prec_logits.sigmoid().gather(-1, bins)
    log_pi_prec = torch.where(precise.bool(), q.log(), (1 - q).log())
    (adv * (log_pi_bin + log_pi_prec)).mean().backward()
    grad_bins, grad_prec = sb.policy_gradient(adv, bins, precise, bin_logits.softmax(-1), prec_logits.sigmoid())
    torch.testing.assert_close(grad_bins, bin_logits.grad)
    torch.testing.assert_close(grad_prec, prec_logits.grad)


def test_the_experiments_grpo_is_verls_grpo():
    # The experiment takes veRL's grpo_vectorized for speed; on its batches it must equal veRL's "grpo".
    (_, _, reward, scale), _ = batch(8 * 40, seed=3)
    index = np.repeat(np.arange(40), 8)
    ours = sb.estimator_fn("grpo")(reward.flatten(), scale.flatten(), index)
    tl = reward.flatten().to(torch.float32).reshape(-1, 1)
    verl, _ = get_adv_estimator_fn("grpo")(token_level_rewards=tl, response_mask=torch.ones_like(tl), index=index)
    torch.testing.assert_close(ours, verl[:, 0].double())
    assert ours.abs().sum() > 0


def test_srpo_ablations_reach_the_registry_with_their_weights():
    (_, _, reward, scale), _ = batch(8 * 20, seed=4)
    index = np.repeat(np.arange(20), 8)
    full, intra, inter = (
        sb.estimator_fn(n)(reward.flatten(), scale.flatten(), index) for n in sb.ESTIMATORS if "srpo" in n
    )
    torch.testing.assert_close(intra + inter, full)
    assert not torch.allclose(intra, full) and not torch.allclose(inter, full)


def test_intra_only_never_moves_the_bins_but_learns_precision():
    # Intra-bin advantages sum to zero within each (prompt, bin) cell, so the bin logits get no gradient at all.
    setting = replace(sb.Setting(), steps=30)
    history = sb.simulate("srpo_intra", [setting], [0, 1])
    torch.testing.assert_close(history.probs, torch.full_like(history.probs, 1 / 3))
    assert (history.precision[-1, 0, :, 0] > history.precision[0, 0, :, 0]).all()


def test_a_seed_follows_the_same_path_alone_or_batched_with_others():
    setting = replace(sb.Setting(), steps=25)
    settings = [setting, replace(setting, init_precision=0.5)]
    alone = sb.simulate("srpo", [setting], [3])
    batched = sb.simulate("srpo", settings, [0, 3])
    torch.testing.assert_close(alone.probs[:, 0, 0], batched.probs[:, 0, 1])
    torch.testing.assert_close(alone.precision[:, 0, 0], batched.precision[:, 0, 1])


def test_mean_ci_is_the_student_t_interval():
    mean, half = sb.mean_ci(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert mean == 3.0
    assert half == pytest.approx(2.7764451051977987 * np.std([1, 2, 3, 4, 5], ddof=1) / np.sqrt(5))


def test_censored_median_counts_never_as_later_than_the_horizon():
    assert sb.censored_median(np.array([-1, 5, 7]), 100) == 7
    assert sb.censored_median(np.array([-1, -1, 5]), 100) == np.inf
    history = sb.History(
        probs=torch.tensor([[[[0.2, 0.8]]], [[[0.6, 0.4]]], [[[0.4, 0.6]]]]), precision=None, expected_reward=None
    )
    assert sb.steps_to_small_majority(history).tolist() == [[1]]


@pytest.mark.e2e
def test_quick_run_writes_every_estimators_table_metrics_and_plots(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "table.json").read_text())
    assert report["command"] == "python experiments/scale_bias/run.py --quick"
    assert list(report["estimators"]) == ["grpo", "srpo", "srpo_intra", "srpo_inter"]
    table_md = (tmp_path / "table.md").read_text()
    for name, result in report["estimators"].items():
        assert result["seeds"] == [0, 1, 2]
        final = result["at_step"]["60"]
        for key in ("small_share", "small_precision", "expected_reward"):
            assert len(final[key]["values"]) == 3
            assert final[key]["mean"] == pytest.approx(np.mean(final[key]["values"]))
        assert f"| {name} | 3 |" in table_md
        for seed in (0, 1, 2):
            log = plots.read_log(tmp_path / "metrics" / f"{name}_seed{seed}.jsonl")
            assert log.damaged == []
            assert sorted(log.steps) == [1, 10, 20, 30, 40, 50, 60]
            shares = [log.steps[60][f"scale/{b}/policy_share"] for b in ("bin0_0-33", "bin1_33-67", "bin2_67-100")]
            assert sum(shares) == pytest.approx(1.0)
    # Intra-only keeps the bins uniform, so its table says so exactly.
    assert report["estimators"]["srpo_intra"]["at_step"]["60"]["small_share"]["mean"] == pytest.approx(1 / 3)
    assert {label: sorted(r) for label, r in report["training_knobs"].items()} == {
        label: ["grpo", "srpo"] for label in sb.VARIANTS
    }
    curves = {p.stem for p in (tmp_path / "curves").glob("*.png")}
    assert curves == {"critic_score_mean", "policy_expected_reward", "scale_policy_share", "scale_policy_precision"}
    for sweep in sb.SWEEPS:
        rows = (tmp_path / f"sweep_{sweep.name}.csv").read_text().splitlines()
        assert len(rows) == 1 + 4  # header + the 2 x 2 quick grid
        assert (tmp_path / f"sweep_{sweep.name}.png").is_file()
