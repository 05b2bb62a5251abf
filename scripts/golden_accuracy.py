#!/usr/bin/env python3
"""Accuracy of every `--precision` of `ced tag` on the tiny reference goldens.

Runs the release-built `ced tag --model <shared>/reference/models/tiny --precision P --top-k all
--format json` on every audio file of the tiny goldens, with both long-input semantics
(`--chunking hf` and `original`), and compares the probabilities with the goldens (the
authors' PyTorch code): the largest probability error over all clips, and whether each
clip's five highest classes are the same in the same order. The bound the speed targets use:
max |Δp| ≤ 0.01 with the top 5 unchanged. (End to end from the audio files: fp32 itself is
within 1e-4 of the goldens, the goldens' end-to-end tolerance.)

    scripts/golden_accuracy.py --ced .build/release/ced [--shared ../shared] [--precision fp32,auto,bf16,int8] [--out F]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors  # noqa: E402

BOUND = 0.01


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", required=True)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--precision", default="fp32,auto,bf16,int8")
    ap.add_argument("--out")
    args = ap.parse_args()
    ref = os.path.join(args.shared, "reference")
    golden = read_safetensors(os.path.join(ref, "golden/tiny.safetensors"))
    cases = [c for c in json.load(open(os.path.join(ref, "cases.json")))["cases"] if c["model"] == "tiny"]
    result = {"bound": BOUND, "clips": [c["audio"] for c in cases], "modes": {}}
    print(f"ced tag on the {len(cases)} clips of the tiny goldens, both chunkings; bound: max |Δp| ≤ {BOUND}, same top 5",
          flush=True)
    for precision in args.precision.split(","):
        worst, same, per_clip = 0.0, True, {}
        for chunking, key in (("hf", "output_hf"), ("original", "output_original")):
            files = [os.path.join(ref, "audio", c["audio"]) for c in cases]
            cmd = [args.ced, "tag", "--model", os.path.join(ref, "models/tiny"), "--precision", precision, "--chunking", chunking,
                   "--top-k", "all", "--format", "jsonl", "--quiet", "--jobs", "1"] + files
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            for c, row in zip(cases, rows):
                labels = row["labels"]
                # Scores by class index: the jsonl rows list every class with its index.
                p = np.zeros(len(labels))
                for item in labels:
                    p[item["index"]] = item["score"]
                want = golden[f"{c['audio']}/{c['variant']}/{key}"].astype(np.float64)
                d = float(np.abs(p - want).max())
                top = bool((np.argsort(-p, kind="stable")[:5] == np.argsort(-want, kind="stable")[:5]).all())
                worst = max(worst, d)
                same &= top
                per_clip[f"{c['audio']} {chunking}"] = {"max_abs_diff": d, "top5_same": top}
        ok = worst <= BOUND and same
        result["modes"][precision] = {"max_abs_diff": worst, "top5_same": same, "within_bound": ok, "clips": per_clip}
        print(f"  {precision:5} max |Δp| {worst:.4f}  top 5 {'same' if same else 'CHANGED'}  "
              f"{'within' if ok else 'OUTSIDE'} the bound", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
