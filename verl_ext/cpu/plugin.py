"""Registers the CPU support with veRL; imported by ``import verl`` when ``VERL_USE_EXTERNAL_MODULES`` names it."""

from verl_ext.cpu import hf_rollout, platform

platform.install()
platform.register_engines()
hf_rollout.register()
