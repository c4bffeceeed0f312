"""The recipe config wires veRL to this project's pieces, and the 7B launch script composes and checks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.dataset.rl_dataset import get_dataset_class

from recipe.ground_r1.main_ground_r1 import RECIPE_DIR, check_config, register_resolvers
from verl_ext.config import CHAT_TEMPLATE
from verl_ext.data.dataset import GroundR1Dataset
from verl_ext.reward.score import compute_score

ROOT = RECIPE_DIR.parents[1]
LAUNCH = ROOT / "examples" / "run_qwen2_5_vl_7b_srpo.sh"


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(RECIPE_DIR / "config"), version_base=None):
        config = compose(config_name="ground_r1", overrides=list(overrides))
    OmegaConf.resolve(config)
    return config


def test_recipe_points_verl_at_the_projects_pieces():
    config = composed()
    rollout = config.actor_rollout_ref.rollout
    assert Path(rollout.multi_turn.tool_config_path).is_file()
    tools = OmegaConf.load(rollout.multi_turn.tool_config_path).tools
    assert tools[0].class_name == "verl_ext.tools.region_zoom.RegionZoomTool"
    template = CHAT_TEMPLATE.read_text()
    assert config.actor_rollout_ref.model.custom_chat_template == template
    assert rollout.limit_images >= 1 + tools[0].config.max_zooms
    # veRL's own loaders resolve the dataset hook and the reward function named in the config.
    assert get_dataset_class(config.data) is GroundR1Dataset
    reward_fn = get_custom_reward_fn(config)
    assert reward_fn.func.__name__ == "_call_with_kwargs" and reward_fn.args[0] is compute_score


def launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LAUNCH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DATA_DIR": "/nonexistent/data", **env},
    )


def test_launch_help_says_what_it_needs():
    out = launch("--help")
    assert out.returncode == 0
    for need in ("nvidia-smi", "data_prep/deepeyes_to_parquet.py", "NNODES", "algorithm.adv_estimator=grpo"):
        assert need in out.stdout


def test_launch_without_gpus_or_data_explains_instead_of_starting_ray():
    out = launch(PATH=f"{Path(os.sys.executable).parent}:/usr/bin:/bin")
    assert out.returncode == 2
    assert "cannot start" in out.stderr
    assert "NVIDIA GPUs" in out.stderr
    assert "no training data" in out.stderr
    assert "ray" not in out.stdout.lower()


@pytest.mark.parametrize("estimator", ["srpo", "grpo"])
def test_launch_overrides_compose_with_the_recipe(estimator, tmp_path):
    extra = [f"algorithm.adv_estimator={estimator}", "trainer.total_training_steps=3"]
    out = launch(*extra, PRINT_OVERRIDES="1", TRAIN_FILES=str(tmp_path / "a.parquet"))
    assert out.returncode == 0, out.stderr
    overrides = out.stdout.splitlines()
    config = composed(*overrides)
    check_config(config)
    assert config.algorithm.adv_estimator == estimator  # the user's flag wins over the script's default
    assert config.trainer.total_training_steps == 3
    assert config.actor_rollout_ref.model.path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config.actor_rollout_ref.rollout.n == 8 and config.data.train_batch_size == 8
    assert config.data.max_pixels == 401408
    assert list(config.data.train_files) == [str(tmp_path / "a.parquet")]
