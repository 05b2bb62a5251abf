#!/usr/bin/env bash
# Label-free distillation at full size on the shared fixture (release build): the teacher
# judges the 600 unlabelled clips (4 stored epochs), a fresh micro-sized student given as a
# config.json learns from the store alone (20 epochs, defaults otherwise), and is scored on
# the 160 labelled test clips: accuracy and top-1 agreement with the teacher.
#
#   scripts/check_distill.sh [MIN_ACCURACY] [MIN_AGREEMENT]     (defaults 0.85 0.85)
#
# The thresholds sit below what the recipe reaches (92.4 % mean accuracy over six seeds,
# 89.4–96.3 %; the authors' PyTorch recipe: 91.9 %) so that CI checks learning, not a seed.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN_ACC="${1:-0.85}"
MIN_AGREE="${2:-0.85}"
SHARED="${CED_SHARED_DIR:-../shared}"
D="$SHARED/reference/distill"
[ -d "$D" ] || { echo "check_distill: $D not found" >&2; exit 1; }
swift build -c release --product ced >/dev/null
CED=".build/release/ced"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
echo '{"embed_dim": 64, "depth": 2, "num_heads": 2, "pooling": "mean"}' > "$W/student.json"
"$CED" distill logits --teacher "$D/teacher-synth4" --output "$W/store" --epochs 4 --quiet "$D/unlabelled" 2>/dev/null
"$CED" distill info "$W/store"
"$CED" distill verify "$W/store" --sample 8
"$CED" distill train --logits "$W/store" --student "$W/student.json" --output "$W/student" --epochs 20 --quiet
"$CED" tag --model "$W/student" --format json --top-k 1 "$D/test" > "$W/student.json.out"
"$CED" tag --model "$D/teacher-synth4" --format json --top-k 1 "$D/test" > "$W/teacher.json.out"
python3 - "$D/test.csv" "$W/student.json.out" "$W/teacher.json.out" "$MIN_ACC" "$MIN_AGREE" <<'PY'
import csv, json, os, sys
truth = {os.path.basename(r["file"]): r["label"] for r in csv.DictReader(open(sys.argv[1]))}
top = lambda path: {os.path.basename(f["file"]): f["labels"][0]["label"] for f in json.load(open(path))}
s, t = top(sys.argv[2]), top(sys.argv[3])
acc = sum(s[f] == truth[f] for f in truth) / len(truth)
agree = sum(s[f] == t[f] for f in truth) / len(truth)
teacher = sum(t[f] == truth[f] for f in truth) / len(truth)
print(f"check_distill: student accuracy {acc:.3f}, agreement with the teacher {agree:.3f} (teacher accuracy {teacher:.3f}) on {len(truth)} test clips")
ok = acc >= float(sys.argv[4]) and agree >= float(sys.argv[5])
print("check_distill:", "passed" if ok else f"FAILED (need accuracy ≥ {sys.argv[4]}, agreement ≥ {sys.argv[5]})")
sys.exit(0 if ok else 1)
PY
