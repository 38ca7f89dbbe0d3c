#!/usr/bin/env bash
# Download, on a CPU machine with pip, exactly the wheels scripts/device-check.sh needs on the bare GPU image
# (no network there): what the harness needs minus what the image holds (scripts/gpu-image-packages.txt),
# each at the version installed in this environment (scripts/gpu_image.py derives the list). Into .whl/
# (git-ignored), one version of each; fails when the project and the wheels together reach 60 MiB.
#   scripts/device-wheels.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.whl}"
PY="${PYTHON:-python3}"
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python  # the tested environment's versions
mapfile -t WHEELS < <("$PY" scripts/gpu_image.py wheels)
(( ${#WHEELS[@]} )) || { echo "error: scripts/gpu_image.py named no wheel" >&2; exit 1; }
mkdir -p "$DIR"
rm -f "$DIR"/*.whl  # two versions of one package stop the whole install there
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DIR" "${WHEELS[@]}"
wheels=$(du -cb "$DIR"/*.whl | tail -1 | cut -f1)
project=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 2^20 }'; }
echo "${#WHEELS[@]} wheels (${WHEELS[*]}): $(mib "$wheels") MiB in $DIR; with the project's $(mib "$project") MiB:" \
     "$(mib $(( wheels + project ))) MiB to carry"
if (( wheels + project >= 60 * 2**20 )); then
  echo "error: the project and $DIR reach 60 MiB, too near the 64 MiB a device call carries" >&2; exit 1
fi
