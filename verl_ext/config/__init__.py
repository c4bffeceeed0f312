"""The recipe's config and assets, shipped with the library as package data so an installed wheel runs the recipe.

``ground_r1_recipe.yaml`` (veRL's ppo_trainer plus SRPO, the dataset hook, the zoom tool and its YAML, the
``<box>`` parser, the chat template, the agent loop and its YAML, the reward, the trainer) is the one home of the
recipe's settings; ``recipe/ground_r1/config/ground_r1.yaml`` builds on it, and :func:`compose_recipe` composes it
without a checkout.

``${ground_r1_config:<file>}`` in a hydra config resolves to the absolute path of a file in this folder and
``${ground_r1_config_text:<file>}`` to its text; :func:`register_resolvers` installs both (the recipe's
entrypoint and the test tooling call it before composing).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parent
#: Qwen2.5-VL chat template that renders tool turns holding images (the crops).
CHAT_TEMPLATE = CONFIG_DIR / "qwen2_5_vl_tool_chat_template.jinja"


def asset(name: str) -> Path:
    """Absolute path of the shipped asset ``name`` (relative to this folder); an unknown name is an error."""
    path = (CONFIG_DIR / name).resolve()
    if not path.is_relative_to(CONFIG_DIR) or not path.is_file():
        raise FileNotFoundError(f"no asset {name!r} in {CONFIG_DIR}")
    return path


def register_resolvers() -> None:
    """Install ``ground_r1_config`` (path of an asset) and ``ground_r1_config_text`` (its text)."""
    OmegaConf.register_new_resolver("ground_r1_config", lambda name: str(asset(name)), replace=True)
    OmegaConf.register_new_resolver("ground_r1_config_text", lambda name: asset(name).read_text(), replace=True)


#: The recipe's settings (veRL's ppo_trainer plus this project's pieces), composed from this package.
RECIPE_CONFIG = "ground_r1_recipe"
TOOL_CONFIG = CONFIG_DIR / "tool_config" / "region_zoom.yaml"
AGENT_LOOP_CONFIG = CONFIG_DIR / "agent_loop.yaml"


def compose_recipe(overrides: list[str] | None = None) -> DictConfig:
    """The recipe's config composed from the installed package (no checkout needed) with ``overrides``, resolved.

    ``python -m recipe.ground_r1.main_ground_r1`` composes the same settings through the recipe's own
    ``ground_r1.yaml``; this is the path for library code (the tiny-model warm start) and wheel installs.
    """
    from hydra import compose, initialize_config_module

    register_resolvers()
    searchpath = "hydra.searchpath=[pkg://verl.trainer.config]"
    with initialize_config_module(config_module=__name__, version_base=None):
        config = compose(config_name=RECIPE_CONFIG, overrides=[searchpath, *(overrides or [])])
    OmegaConf.resolve(config)
    return config
