#!/usr/bin/env bash
# The first-contact GPU check, in priority order, each part under its own timeout and writing its
# result file as soon as it ends (a failure loses only that part); at most 8 minutes in all.
#   scripts/device-check.sh RESULTS_DIR             on the bare GPU image, wheels from .whl/ (device-wheels.sh)
#   scripts/device-check.sh --dry-run RESULTS_DIR   the same parts on CPU at nano scale, tiny step counts (CI),
#       with only what the GPU machine will have importable: the image's distributions
#       (scripts/gpu-image-packages.txt), the carried wheels' (scripts/gpu_image.py) and the project
# Written for one NVIDIA H100 80GB HBM3 (H100 SXM) or H200; the printed device name picks the MFU peak.
# Results (flat, 6 files; the device call brings back at most 8): probe.json, overhead.json, cost-71m.json,
# cost-350m.json, summary.md, log.txt. A part that fails prints its error's last line.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY="--dry-run"; shift; fi
OUT="${1:?usage: scripts/device-check.sh [--dry-run] RESULTS_DIR}"
mkdir -p "$OUT"
export LITDATA_DISABLE_VERSION_CHECK=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -n "$DRY" ] && PY=.venv/bin/python
TOTAL=${DEVICE_CHECK_SECONDS:-480}
START=$(date +%s)
FAILED=""
CAUSES=()        # each distinct failure, once
declare -A BROKE  # failure -> the parts it failed
LOG="$OUT/log.txt"
: > "$LOG"

if [ -n "$DRY" ]; then  # what the image lacks and no wheel brings fails here as it would there
  SITE=$(mktemp -d)
  "$PY" scripts/gpu_image.py hide "$SITE" | tee -a "$LOG" || exit 1
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ls .whl/*.whl >/dev/null 2>&1; then  # the wheels the bare image lacks, offline
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$LOG" 2>&1 || echo "wheel install failed (see $LOG)"
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# part NAME BUDGET_SECONDS ARGS...: runs under min(budget, time left - 15 s for the summary)
part() {
  local name=$1 budget=$2; shift 2
  local left=$(( TOTAL - ($(date +%s) - START) - 15 ))
  (( budget > left )) && budget=$left
  if (( budget < 10 )); then echo "== $name: skipped (no time left)" | tee -a "$LOG"; return; fi
  echo "== $name (at most ${budget}s)" | tee -a "$LOG"
  local t0=$(date +%s) start=$(( $(wc -l < "$LOG") + 1 ))
  timeout -k 5 "$budget" "$PY" scripts/device_check.py "$@" "$OUT" $DRY >>"$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
  (( rc == 0 )) && return
  FAILED="$FAILED $name"
  local cause  # the part's last error line, e.g. "ModuleNotFoundError: No module named 'x': ..."
  cause=$(tail -n +"$start" "$LOG" | grep -E '^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception): ' | tail -1)
  (( rc == 124 || rc == 137 )) && cause="timed out"
  [ -z "$cause" ] && cause="exit $rc (see $LOG)"
  [ -z "${BROKE[$cause]+x}" ] && CAUSES+=("$cause")
  BROKE[$cause]="${BROKE[$cause]:+${BROKE[$cause]}, }$name"
}

if [ -n "$DRY" ]; then
  part probe 60 probe
  part overhead 60 overhead --steps 6
  part cost-71m 60 cost --name cost-71m --activation swiglu,polynorm --steps 2 --warmup 1
  part cost-350m 30 cost --name cost-350m --activation swiglu --kernels fused --steps 1 --warmup 1
else
  part probe 75 probe --scale gpas-71m
  part overhead 150 overhead --scale gpas-71m --steps 60
  part cost-71m 210 cost --scale gpas-71m --name cost-71m --activation swiglu,polynorm,powlu,gelu --steps 20 --warmup 5
  part cost-350m 90 cost --scale gpas-350m --name cost-350m --activation swiglu --kernels fused --steps 10 --warmup 3
fi
"$PY" scripts/device_check.py summary "$OUT" 2>>"$LOG"
echo "total $(( $(date +%s) - START ))s; results in $OUT${FAILED:+; failed:$FAILED}"
for cause in ${CAUSES[@]+"${CAUSES[@]}"}; do echo "error in ${BROKE[$cause]}: $cause"; done
# the dry run is CI's: a part that fails there is a script that rotted
if [ -n "$DRY" ]; then
  [ -n "$FAILED" ] && exit 1
  files=$(find "$OUT" -type f | wc -l)
  (( files > 8 )) && { echo "error: $OUT holds $files files, more than the 8 a device call brings back"; exit 1; }
fi
exit 0
