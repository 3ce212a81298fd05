#!/usr/bin/env bash
# The prepared GPU script: on a machine with a GPU, everything dlsvm can say about it in one folder,
# in under 8 minutes when a built binary is at hand (the steps' limits add up to 450 s; on a GPU the
# kernels take milliseconds and the CPU reference checks most of the time).
#
#   bash .ci/gpu-report.sh [OUT]      # OUT defaults to $OUT, else gpu-report/
#
# It uses target/release/dlsvm when one is there (built here or carried over), else builds it.
# Steps, each with its own time limit so one slow step cannot eat the others' (a step that fails
# or times out is recorded, and the script goes on):
#   info.txt, info.json        `dlsvm info`: the adapter, its features, limits, subgroup lanes
#   check.txt, check.json      `dlsvm check`: every kernel and variant against the CPU reference
#   tune.txt, tune.json        `dlsvm tune --preset fer`: the tuner's choice for every op of a step
#   bench-report.json          `dlsvm bench --report`: the check, the choices and every row
#   train.txt, train/          `dlsvm train --preset fer --steps 300`: a short real training run
#   steps.txt                  what each step took and how it ended
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-report}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export DLSVM_TUNE_CACHE="$out/tune-cache.json"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
log="$out/steps.txt"
: > "$log"

step() { # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "$name: rc $rc in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$log"
}

bin=target/release/dlsvm
if [ ! -x "$bin" ]; then
  step build 420 cargo build --release --locked > "$out/build.txt" 2>&1
fi
[ -x "$bin" ] || { echo "no dlsvm binary (see $out/build.txt)" | tee -a "$log"; exit 1; }

# Limits: 450 s in all (7.5 minutes) with a binary at hand.
step info 20 "$bin" info > "$out/info.txt" 2>&1
step info-json 20 "$bin" info --json > "$out/info.json" 2> /dev/null
step check 90 "$bin" check --json > "$out/check.json" 2> "$out/check.txt"
step tune 90 "$bin" tune --preset fer > "$out/tune.txt" 2>&1
step tune-json 20 "$bin" tune --preset fer --json > "$out/tune.json" 2> /dev/null
step bench 150 "$bin" bench --report "$out/bench-report.json" > "$out/bench.txt" 2>&1
step train 60 "$bin" train --preset fer --steps 300 --out "$out/train" --json > "$out/train.txt" 2>&1
echo "everything is in $out" | tee -a "$log"
