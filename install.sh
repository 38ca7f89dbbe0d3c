#!/usr/bin/env bash
# Install the harness and everything it needs from this repository's own files.
# Creates ./.venv unless a virtual environment is already active.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
pip() { python -m pip "$@"; }
# litdata declares obstore, tifffile and torchvision, which the harness never imports (and torchvision
# beside torch 2.13.0 breaks lightning's import), so it is installed with --no-deps below; pip's resolver
# then reports those three as missing after every later install. Only that known report is dropped.
known_litdata_report() {
  grep -vE "^(ERROR: pip's dependency resolver does not currently take into account all the packages|This behaviour is the source of the following dependency conflicts|litdata 0\.2\.76 requires (obstore|tifffile|torchvision), which is not installed)" >&2 || true
}
pip install -q --upgrade pip >/dev/null 2>&1 || true
# CPU build of torch (a bare `torch` would pull a multi-GB CUDA build). Skip if torch is present.
python -c "import torch" 2>/dev/null || pip install -q "torch==${TORCH_VERSION:-2.13.0}"
# litdata declares torchvision, which must not sit beside torch 2.13.0: install without deps.
pip install -q --no-deps "litdata==0.2.76"
pip install -q -e ".[dev,extras,eval]" 2> >(known_litdata_report)
# fp8 training (torchao) only where a CUDA device is present.
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  pip install -q -e ".[gpu]" 2> >(known_litdata_report)
fi
# the project's own bytecode, once: pip compiles the packages it installs but not an editable project,
# and where PYTHONDONTWRITEBYTECODE is set every process would compile bench/ again (~0.5 s each)
python -m compileall -q bench models datamodules >/dev/null
echo "installed: $(python -c 'import torch, lightning, litdata; print("torch", torch.__version__, "lightning", lightning.__version__, "litdata", litdata.__version__)' 2>/dev/null)"
