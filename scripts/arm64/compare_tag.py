#!/usr/bin/env python3
"""Compares `ced tag --format json --top-k all` output with the reference goldens.

Usage: compare_tag.py TAG_JSON GOLDEN_SAFETENSORS [TOLERANCE]

For every file in the JSON, its 527 scores against `<file>/default/output_hf` of the golden
file (max |Δ| must be at most TOLERANCE, default 1e-4). Standard library only."""
import json
import os
import struct
import sys

tag = json.load(open(sys.argv[1]))
tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()


def tensor(name):
    info = header[name]
    assert info["dtype"] == "F32", info
    start, end = info["data_offsets"]
    return struct.unpack("<%df" % ((end - start) // 4), data[start:end])


worst, ok = 0.0, bool(tag)
for item in tag:
    name = os.path.basename(item["file"])
    want = tensor(f"{name}/default/output_hf")
    got = [0.0] * len(want)
    for label in item["labels"]:
        got[label["index"]] = label["score"]
    if len(item["labels"]) != len(want):
        print(f"{name}: {len(item['labels'])} scores, expected {len(want)}")
        ok = False
    diff = max(abs(a - b) for a, b in zip(got, want))
    worst = max(worst, diff)
    print(f"{name}: max |Δp| {diff:.2e} against the reference")
    ok = ok and diff <= tolerance
print(f"ced tag vs reference: max |Δp| {worst:.2e} (tolerance {tolerance:g}): {'OK' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
