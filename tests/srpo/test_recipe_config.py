"""The recipe config composes with hydra for both estimators; bad SRPO options fail before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import verl
from hydra import compose, initialize_config_dir

from recipe.ground_r1.main_ground_r1 import check_config, register_resolvers
from verl_ext.algorithms.srpo import SRPOConfigError

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "recipe" / "ground_r1" / "config")


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="ground_r1", overrides=list(overrides))


@pytest.mark.parametrize("estimator", ["srpo", "grpo"])
def test_recipe_composes_verls_ppo_trainer_for_both_estimators(estimator):
    config = composed(f"algorithm.adv_estimator={estimator}", "algorithm.srpo.bin_edges=[0.1,0.3]")
    assert config.algorithm.adv_estimator == estimator
    assert list(config.algorithm.srpo.bin_edges) == [0.1, 0.3]
    assert config.trainer.v1.trainer_mode == "ground_r1_sync"
    check_config(config)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["algorithm.srpo.bin_edges=[0.3,0.1]"], "strictly increasing"),
        (["algorithm.srpo.bin_edges=[0.5,1.0]"], "strictly inside"),
        (["algorithm.srpo.num_bins=0"], "num_bins must be an integer >= 1"),
        (["algorithm.srpo.num_bins=2", "algorithm.srpo.bin_edges=[0.1,0.2]"], "num_bins - 1 = 1"),
        (["trainer.v1.trainer_mode=sync"], "trainer_mode=ground_r1_sync"),
        (["trainer.use_v1=false"], "trainer.use_v1=true"),
        (["actor_rollout_ref.rollout.n=1"], "rollout.n=1 every advantage is 0"),
        (["algorithm.srpo.epsilon=0"], "epsilon must be > 0"),
        (["algorithm.srpo.w_intra=heavy"], "invalid algorithm.srpo.w_intra"),
    ],
)
def test_bad_options_fail_before_the_first_step(overrides, match):
    with pytest.raises(SRPOConfigError, match=match):
        check_config(composed(*overrides))


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["data.max_pixels=null"], "data.max_pixels must be a positive integer"),
        (["data.min_pixels=500000"], "larger than data.max_pixels"),
        (["data.custom_cls.path=null"], "data.custom_cls must name GroundR1Dataset"),
        (["data.custom_cls.path=pkg://verl.utils.dataset.rl_dataset", "data.custom_cls.name=RLHFDataset"], "not a"),
    ],
)
def test_a_run_without_one_frame_source_is_refused_at_start(overrides, match):
    for estimator in ("srpo", "grpo"):
        with pytest.raises(ValueError, match=match):
            check_config(composed(f"algorithm.adv_estimator={estimator}", *overrides))


def test_grpo_needs_no_srpo_hook():
    check_config(composed("algorithm.adv_estimator=grpo", "trainer.v1.trainer_mode=sync"))


@pytest.mark.e2e  # a fresh interpreter through the real entrypoint
def test_entrypoint_reports_bad_options_from_the_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "recipe.ground_r1.main_ground_r1", "algorithm.srpo.bin_edges=[0.3,0.1]"],
        cwd=Path(CONFIG_DIR).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "bin_edges must be strictly increasing" in out.stderr
    assert "ray init" not in out.stdout  # refused before Ray started


@pytest.mark.e2e  # veRL's own test files in a fresh pytest process
def test_verls_own_core_algos_cpu_tests_pass_with_the_plugin_installed(tmp_path):
    verl_tests = Path(verl.__file__).resolve().parents[1] / "tests" / "trainer"
    files = [
        verl_tests / "ppo" / "test_core_algos_on_cpu.py",
        verl_tests / "test_multi_trajectories_advantage_on_cpu.py",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, files)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout.splitlines()[-1]
