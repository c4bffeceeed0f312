"""Ground-R1 evaluation entrypoint: the training recipe's agent loop, tool, prompts and reward on eval sets.

    python -m recipe.ground_r1.main_eval \
        actor_rollout_ref.model.path=<checkpoint> data.val_files=[vstar.parquet,hr_bench_4k.parquet] \
        eval.backend=vllm eval.out_dir=<dir>

The config is the training one (``config/ground_r1.yaml``) with ``config/eval/default.yaml`` on top, so every
loop setting is the training one unless overridden. Overrides use Hydra's syntax; the API key of an
OpenAI-compatible server comes from ``OPENAI_API_KEY`` only, and no output or message holds it. A config that
cannot work, or an ``eval.out_dir`` in use or holding another run's results, stops before any question is
evaluated (exit status 2, a message naming the setting).
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from recipe.ground_r1.main_ground_r1 import RECIPE_DIR, register_resolvers

EVAL_DEFAULTS = "+eval=default"


def compose_eval_config(overrides: list[str]) -> DictConfig:
    """The recipe config plus the eval defaults and ``overrides``, resolved."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(RECIPE_DIR / "config"), version_base=None):
        config = compose(config_name="ground_r1", overrides=[EVAL_DEFAULTS, *overrides])
    OmegaConf.resolve(config)
    return config


def main(argv: list[str] | None = None) -> dict[str, float]:
    from verl_ext.eval.backends import EvalConfigError, redact
    from verl_ext.eval.driver import run_eval

    config = compose_eval_config(list(sys.argv[1:] if argv is None else argv))
    try:
        return run_eval(config)
    except EvalConfigError as e:
        print(f"main_eval: {redact(str(e))}", file=sys.stderr)  # messages may quote a server's reply or URL
        raise SystemExit(2) from e


if __name__ == "__main__":
    main()
