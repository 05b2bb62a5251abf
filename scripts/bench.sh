#!/usr/bin/env bash
# The CED speed benchmark in one command: Swift (`ced bench`, release build) beside ONNX
# Runtime (PyPI's onnxruntime in a private venv) on the same clip and thread count, then
# `ced tag` throughput and peak memory per precision (beside ORT's peak memory), and every
# precision's accuracy on the tiny goldens; prints the README's "Speed" table.
#
#   scripts/bench.sh            full run (about 12 minutes on 2 cores)
#   scripts/bench.sh --quick    a smoke run with few repetitions (numbers not meaningful)
#   scripts/bench.sh --train    training speed beside PyTorch (scripts/train_bench.sh)
#
# Environment: CED_SHARED_DIR (default ../shared: the reference tiny model and ONNX files),
# CED_BENCH_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/ced-bench: venv, generated ONNX models
# and audio, results), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=20 WARMUP=3 ROUNDS=3 CLIPS=100 REPEAT=2 HOURS=1
# Training speed beside PyTorch is scripts/train_bench.sh (also: scripts/bench.sh --train).
if [[ "${1:-}" == "--train" ]]; then shift; exec scripts/train_bench.sh "$@"; fi
if [[ "${1:-}" == "--quick" ]]; then RUNS=3 WARMUP=1 ROUNDS=1 CLIPS=10 REPEAT=1 HOURS=0.05; shift; fi
if [[ $# -gt 0 ]]; then echo "usage: scripts/bench.sh [--quick]" >&2; exit 2; fi

SHARED="${CED_SHARED_DIR:-../shared}"
CACHE="${CED_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ced-bench}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
OUT="$CACHE/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"

echo "== building ced (release)" >&2
swift build -c release --product ced >&2
CED="$(swift build -c release --show-bin-path)/ced"

echo "== python venv with onnxruntime ($CACHE/venv)" >&2
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import onnxruntime, onnx, numpy' 2>/dev/null; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip >&2
  "$VENV/bin/pip" install --quiet onnxruntime onnx numpy >&2
fi
PY="$VENV/bin/python"

echo "== allocation counter" >&2
cc -O2 -shared -fPIC -o "$CACHE/alloc_count.so" scripts/alloc_count.c

# How much of the machine other processes used during each phase: all busy CPU time
# (/proc/stat) minus the CPU time of this script's own children (bash `times`).
HZ=$(getconf CLK_TCK)
CORES=$(nproc)
phase_start() {
  times > "$OUT/.times"
  P_CPU=$(awk 'NR==2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%.2f", t }' "$OUT/.times")
  P_BUSY=$(awk -v hz="$HZ" '/^cpu /{ printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat)
  P_WALL=$(date +%s.%N)
}
phase_end() {
  times > "$OUT/.times"
  local cpu busy wall
  cpu=$(awk 'NR==2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%.2f", t }' "$OUT/.times")
  busy=$(awk -v hz="$HZ" '/^cpu /{ printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat)
  wall=$(date +%s.%N)
  awk -v phase="$1" -v c0="$P_CPU" -v c1="$cpu" -v b0="$P_BUSY" -v b1="$busy" -v w0="$P_WALL" -v w1="$wall" -v n="$CORES" 'BEGIN {
    other = (b1 - b0) - (c1 - c0); if (other < 0) other = 0; w = w1 - w0
    printf "{\"phase\": \"%s\", \"wall_s\": %.1f, \"other_cpu_s\": %.1f, \"other_share\": %.3f}\n", phase, w, other, other / (n * w)
  }' >> "$OUT/noise.jsonl"
  rm -f "$OUT/.times"
}

TINY=()
REF_ONNX=()
if [[ -f "$SHARED/reference/models/tiny/config.json" ]]; then
  TINY=(--tiny "$SHARED/reference/models/tiny")
  REF_ONNX=(--reference-onnx "$SHARED/reference/onnx")
else
  echo "warning: $SHARED/reference not found: tiny uses random weights, no authors' ONNX files" >&2
fi

echo "== exporting the models, the clip and Swift's probabilities for the ORT side" >&2
"$CED" bench "${TINY[@]}" --runs 1 --warmup 0 --export "$CACHE/export" --format json > "$OUT/export.json"

# On a CPU with AMX, each Swift run is followed by one with AMX forced off
# (CED_BF16_KERNEL=avx512: the AVX-512 BF16 / VNNI path of CPUs without AMX, e.g. AMD Zen 4),
# reported as a second table.
HAS_AMX=0
if grep -qw amx_bf16 /proc/cpuinfo 2>/dev/null; then HAS_AMX=1; fi

# Swift and ONNX Runtime take turns model by model for $ROUNDS rounds, and who goes first
# alternates, so both sides of a ratio are timed within seconds of each other; the report
# keeps each figure's best round. (Timings on a shared VM drift by tens of percent from one
# minute to the next.)
N=0
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round/$ROUNDS, load: $(cat /proc/loadavg)" >&2
  phase_start
  for size in tiny mini small base; do
    N=$((N + 1))
    swift_run() {
      echo "== Swift: ced bench --models $size" >&2
      LD_PRELOAD="$CACHE/alloc_count.so" "$CED" bench "${TINY[@]}" --models "$size" --runs "$RUNS" --warmup "$WARMUP" \
        --precision fp32,auto,bf16,int8 --format json > "$OUT/swift-$N.json"
      if (( HAS_AMX )); then
        echo "== Swift, AMX forced off: CED_BF16_KERNEL=avx512 ced bench --models $size --precision bf16,int8" >&2
        CED_BF16_KERNEL=avx512 "$CED" bench "${TINY[@]}" --models "$size" --runs "$RUNS" --warmup "$WARMUP" \
          --precision auto,bf16,int8 --format json > "$OUT/swift_noamx-$N.json"
      fi
    }
    ort_run() {
      echo "== ONNX Runtime: $size" >&2
      "$PY" scripts/ort_bench.py --export "$CACHE/export" "${REF_ONNX[@]}" --cache "$CACHE/onnx" --models "$size" \
        --threads 2 --runs "$RUNS" --warmup "$WARMUP" --out "$OUT/ort-$N.json" >&2
    }
    if (( round % 2 == 1 )); then swift_run; ort_run; else ort_run; swift_run; fi
  done
  phase_end "round $round"
done

echo "== ced tag: throughput and peak memory per precision" >&2
TINY_MODEL="${TINY[1]:-$CACHE/export/models/ced-tiny}"
phase_start
"$PY" scripts/cli_bench.py --ced "$CED" --model "tiny=$TINY_MODEL" --model "base=$CACHE/export/models/ced-base" \
  --precision fp32,auto,bf16,int8 --memory-model "tiny=$TINY_MODEL" --memory-model "base=$CACHE/export/models/ced-base" \
  --memory-precision fp32,auto,bf16,int8 \
  --workdir "$CACHE/audio" --clips "$CLIPS" --repeat "$REPEAT" --hours "$HOURS" --out "$OUT/cli.json" >&2
phase_end "ced tag"

if [[ -f "$SHARED/reference/golden/tiny.safetensors" ]]; then
  echo "== accuracy of every precision on the tiny goldens" >&2
  "$PY" scripts/golden_accuracy.py --ced "$CED" --shared "$SHARED" --precision fp32,auto,bf16,int8 --out "$OUT/golden.json" >&2
fi

cat "$OUT/noise.jsonl" >&2
"$PY" scripts/bench_report.py "$OUT" | tee "$OUT/report.md"
echo >&2
echo "results: $OUT" >&2
