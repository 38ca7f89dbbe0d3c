#!/usr/bin/env bash
# Download, on a CPU machine with pip, exactly the wheels the bare GPU image (Python 3.12, torch,
# lightning, numpy, rich, tokenizers, safetensors; no network) lacks for scripts/device-check.sh:
# litdata and its import-time needs boto3 and requests with theirs, and torchao. No scipy: the
# check does not need it. Into .whl/ (git-ignored), at most about 40 MiB; one version of each.
#   scripts/device-wheels.sh [DIR]        (TORCHAO_VERSION overrides torchao's pin)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.whl}"
mkdir -p "$DIR"
PY="${PYTHON:-python3}"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=(
  "litdata==0.2.76"                     # the pinned version (install.sh)
  "boto3==1.44.8" "botocore==1.44.8" "s3transfer==0.19.3" "jmespath==1.1.0" "python-dateutil==2.9.0.post0"
  "six==1.17.0"                         # boto3 and its own needs
  "requests==2.34.2" "urllib3==2.8.0" "idna==3.20" "certifi==2026.10.19.post1" "charset-normalizer==3.5.3"
  "torchao==${TORCHAO_VERSION:-0.18.0}"
)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DIR" "${WHEELS[@]}"
size=$(du -sm "$DIR" | cut -f1)
echo "$(ls "$DIR"/*.whl | wc -l) wheels, ${size} MiB in $DIR"
if (( size > 40 )); then echo "error: $DIR holds ${size} MiB, over the 40 MiB the device call can carry" >&2; exit 1; fi
