"""CPU-only support for running veRL's real trainer without a GPU (tests, the tiny CPU demo). Never used on GPU.

Loaded in every process, Ray workers included, by ``import verl`` when a run sets::

    VERL_USE_EXTERNAL_MODULES=verl_ext.cpu VERL_PLATFORM=cpu

Importing it registers the ``cpu`` platform (:mod:`verl_ext.cpu.platform`), lets veRL's process-group
init use plain gloo, registers veRL's FSDP engines for device ``cpu`` and adds the ``hf`` async rollout
(:mod:`verl_ext.cpu.hf_rollout`).
"""

from verl_ext.cpu import hf_rollout, platform

platform.install()
platform.register_engines()
hf_rollout.register()
