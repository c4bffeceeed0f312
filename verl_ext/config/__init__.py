"""The recipe's assets, shipped with the library as package data so an installed wheel runs the same recipe.

``${ground_r1_config:<file>}`` in a hydra config resolves to the absolute path of a file in this folder and
``${ground_r1_config_text:<file>}`` to its text; :func:`register_resolvers` installs both (the recipe's
entrypoint and the test tooling call it before composing).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

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
