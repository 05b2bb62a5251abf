#!/usr/bin/env bash
# Training speed beside PyTorch, in one run: `ced bench-train` (release build) and our PyTorch
# CED (scripts/ced_torch.py bench: eager, fp32, 2 threads) take turns model by model (who goes
# first alternates), each step = train-mode forward + BCE-with-logits + backward + AdamW on
# 10 s log-mels, logit pooling; one process per figure, so each peak RSS is its own.
#
#   scripts/train_bench.sh            tiny and mini at batch 8, base at batch 4; 2 rounds
#   scripts/train_bench.sh --quick    tiny only, 1 round (a smoke run)
#
# Swift runs fp32 (the fastest plan), bf16 (bf16 products), and fp32 with whole blocks
# recomputed (the least memory). PyTorch comes from PyPI into $CED_BENCH_CACHE/venv-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="tiny mini base" ROUNDS=2 RUNS=4
if [[ "${1:-}" == "--quick" ]]; then MODELS="tiny" ROUNDS=1 RUNS=2; shift; fi
CACHE="${CED_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ced-bench}"
OUT="$CACHE/results/train-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
swift build -c release --product ced >&2
CED="$(swift build -c release --show-bin-path)/ced"
VENV="$CACHE/venv-torch"
if ! "$VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "torch==2.13.0+cpu" numpy >&2 || "$VENV/bin/pip" install --quiet torch numpy >&2
fi
for round in $(seq 1 "$ROUNDS"); do
  i=0
  for m in $MODELS; do
    b=8; [[ "$m" == "base" ]] && b=4
    swift_runs() {
      "$CED" bench-train --models "$m" --batch "$b" --runs "$RUNS" --format json > "$OUT/swift-fp32-$m-$round.json"
      "$CED" bench-train --models "$m" --batch "$b" --runs "$RUNS" --precision bf16 --format json > "$OUT/swift-bf16-$m-$round.json"
      "$CED" bench-train --models "$m" --batch "$b" --runs "$RUNS" --recompute blocks --format json > "$OUT/swift-lowmem-$m-$round.json"
    }
    torch_run() { "$VENV/bin/python" scripts/ced_torch.py bench --model "$m" --batch "$b" --runs "$RUNS" > "$OUT/torch-$m-$round.json"; }
    if (( (i + round) % 2 == 0 )); then swift_runs; torch_run; else torch_run; swift_runs; fi
    echo "round $round $m done" >&2
    i=$((i + 1))
  done
done
"$VENV/bin/python" - "$OUT" $MODELS <<'PY'
import json, glob, os, sys
out, models = sys.argv[1], sys.argv[2:]
def best(kind, m):
    rows = []
    for f in sorted(glob.glob(f"{out}/{kind}-{m}-*.json")):
        d = json.load(open(f)); rows.append(d[0] if isinstance(d, list) else d)
    return min(rows, key=lambda r: r["best_ms_per_clip"]), [r["best_ms_per_clip"] for r in rows]
print("Training step (forward + BCE-with-logits + backward + AdamW), 10 s clips (1001 frames), 2 threads; best of each round, ms per clip")
print()
print("| model | batch | Swift fp32 | Swift bf16 | Swift fp32, blocks recomputed | PyTorch fp32 | fp32 / PyTorch | bf16 / PyTorch | peak RSS Swift fp32 / recomputed / PyTorch |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for m in models:
    f, fr = best("swift-fp32", m); b, br = best("swift-bf16", m); l, lr = best("swift-lowmem", m); t, tr = best("torch", m)
    print(f"| {m} | {f['batch']} | {f['best_ms_per_clip']:.1f} | {b['best_ms_per_clip']:.1f} | {l['best_ms_per_clip']:.1f} | {t['best_ms_per_clip']:.1f} | "
          f"{f['best_ms_per_clip'] / t['best_ms_per_clip']:.2f}× (rounds {', '.join(f'{a / c:.2f}' for a, c in zip(fr, tr))}) | "
          f"{b['best_ms_per_clip'] / t['best_ms_per_clip']:.2f}× | {f['peak_rss_mb']:.0f} / {l['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} MB |")
print()
print(f"PyTorch {t['torch']}; results in {out}")
PY
