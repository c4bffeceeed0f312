"""Ground-R1 training entrypoint: veRL's PPO trainer with SRPO routing and per-scale-bin diagnostics.

    python -m recipe.ground_r1.main_ground_r1 algorithm.adv_estimator=srpo ...   # SRPO
    python -m recipe.ground_r1.main_ground_r1 algorithm.adv_estimator=grpo ...   # the GRPO baseline

The config (``config/ground_r1.yaml``) builds on the recipe settings the library ships
(``verl_ext/config/ground_r1_recipe.yaml``: veRL's own ``ppo_trainer`` from the installed package, the
``ground_r1_sync`` trainer, SRPO, the dataset hook, the zoom tool, the parser, the chat template, the agent loop
and the reward).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import ray
from omegaconf import DictConfig, OmegaConf
from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device
from verl.utils.import_utils import load_extern_object

from verl_ext import compat
from verl_ext.algorithms.srpo import SRPOConfig, SRPOConfigError
from verl_ext.config import register_resolvers
from verl_ext.data.dataset import GroundR1Dataset, pixel_bounds
from verl_ext.tools.branching import check_branching
from verl_ext.trainer import TRAINER_MODE

RECIPE_DIR = Path(__file__).resolve().parent


def check_config(config: DictConfig) -> None:
    """Fail before Ray starts on a veRL release, options or data settings the recipe cannot run with."""
    compat.check_surfaces()
    check_frame_source(config.data)
    check_branching(config)
    SRPOConfig.from_algorithm_config(config.algorithm)
    if str(config.algorithm.adv_estimator) != "srpo":
        return
    if not config.trainer.use_v1:
        raise SRPOConfigError("SRPO routes evidence scales through the v1 trainer: set trainer.use_v1=true")
    if config.trainer.v1.trainer_mode != TRAINER_MODE:
        raise SRPOConfigError(
            f"SRPO needs trainer.v1.trainer_mode={TRAINER_MODE} (veRL's sync trainer plus the evidence-scale "
            f"hook), got {config.trainer.v1.trainer_mode!r}"
        )
    if int(config.actor_rollout_ref.rollout.n) < 2:
        raise SRPOConfigError(
            "SRPO compares the trajectories of one prompt: with actor_rollout_ref.rollout.n="
            f"{config.actor_rollout_ref.rollout.n} every advantage is 0 (veRL's GRPO would give a lone trajectory its "
            "reward). Set rollout.n >= 2 (the paper: 8)."
        )


def check_frame_source(data: DictConfig) -> None:
    """The frame the model sees comes from one place: ``data.min_pixels``/``max_pixels`` through the dataset hook.

    The hook writes the bounds and the resized frame into every row for the prompt, the zoom tool and the reward;
    another dataset class would leave them to guess, so it is refused here.
    """
    custom = data.get("custom_cls") or {}
    if not custom.get("path") or not custom.get("name"):
        raise ValueError(f"data.custom_cls must name {GroundR1Dataset.__name__} (pkg://verl_ext.data.dataset)")
    cls = load_extern_object(custom.path, custom.name)
    if not (isinstance(cls, type) and issubclass(cls, GroundR1Dataset)):
        raise ValueError(
            f"data.custom_cls {custom.path}:{custom.name} is not a {GroundR1Dataset.__name__}: the zoom tool and the "
            "reward take the image frame from the rows that dataset hook writes"
        )
    pixel_bounds(data)


@ray.remote(num_cpus=1)
class GroundR1TaskRunner(TaskRunnerV1.__ray_actor_class__):
    """veRL's v1 task runner; registers the Ground-R1 trainer in its own (Ray actor) process first."""

    def run(self, config: DictConfig) -> None:
        import verl_ext.trainer.ground_r1_trainer  # noqa: F401  (register_trainer("ground_r1_sync"))

        super().run(config)


def run_ground_r1(config: DictConfig) -> None:
    """Check, then hand the composed config to veRL's ``run_ppo`` with the Ground-R1 task runner.

    Recipe paths are resolved here, in the driver, so Ray workers need no resolvers of ours.
    """
    register_resolvers()
    OmegaConf.resolve(config)
    check_config(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=GroundR1TaskRunner)


@hydra.main(config_path="config", config_name="ground_r1", version_base=None)
def main(config: DictConfig) -> None:
    run_ground_r1(config)


if __name__ == "__main__":
    main()
