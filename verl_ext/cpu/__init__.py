"""CPU-only support for running veRL's real trainer without a GPU (tests, the tiny CPU demo). Never used on GPU.

A CPU run loads :mod:`verl_ext.cpu.plugin` in every process, Ray workers included, through ``import verl``::

    VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.plugin VERL_PLATFORM=cpu

- :mod:`verl_ext.cpu.platform`: the ``cpu`` platform (host tensors, gloo) and veRL's FSDP engines on cpu;
- :mod:`verl_ext.cpu.hf_rollout`: the ``hf`` async rollout (HF ``generate`` server + weight-receiving adapter).
"""
