#!/usr/bin/env python3
"""Assembles a recording with known sound events from the labelled 2 s clips of
../shared/reference/distill/test/ over faint white noise (the check of issue 14), and
writes it as 16-bit mono WAV plus a CSV of its true events (label,start,end).

Between sounds there are --gaps seconds of background (uniform in the range). A sound is one
clip (a 2 s event), two clips of one class back to back (one 4 s event) or, with
--different-pairs, two clips of different classes back to back. --repeat N concatenates N
copies (e.g. 15 x 240 s = one hour, for the endless-input check).

Standard library only; the same seed gives the same bytes.

    scripts/events_recording.py --out rec.wav --truth rec.csv
    scripts/events_recording.py --seconds 240 --repeat 15 --out hour.wav --truth hour.csv
"""
import argparse
import array
import csv
import math
import os
import random
import struct
import sys
import wave


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("CED_SHARED_DIR") or os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--gaps", default="2:6", help="background between sounds, min:max seconds")
    ap.add_argument("--different-pairs", action="store_true", help="also put clips of different classes back to back")
    ap.add_argument("--noise", type=float, default=0.002, help="background noise standard deviation")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--truth", required=True)
    a = ap.parse_args()

    distill = os.path.join(a.shared, "reference", "distill")
    by_label = {}
    with open(os.path.join(distill, "test.csv")) as f:
        for row in csv.DictReader(f):
            by_label.setdefault(row["label"], []).append(os.path.join(distill, row["file"]))
    labels = sorted(by_label)
    rng = random.Random(a.seed)
    lo, hi = (float(x) for x in a.gaps.split(":"))
    sr = 16000
    n = int(a.seconds * sr)
    x = [rng.gauss(0, a.noise) for _ in range(n)]
    decks = {}

    def draw(label):
        if not decks.get(label):
            deck = list(by_label[label])
            rng.shuffle(deck)
            decks[label] = deck
        with wave.open(decks[label].pop()) as w:
            assert w.getframerate() == sr and w.getnchannels() == 1 and w.getsampwidth() == 2
            pcm = array.array("h", w.readframes(w.getnframes()))
        if sys.byteorder != "little":
            pcm.byteswap()
        return [v / 32768 for v in pcm]

    events = []
    t = rng.uniform(lo, hi)
    while True:
        kind = rng.random()
        first = rng.choice(labels)
        parts = [first]
        if kind > 0.6:
            other = rng.choice([l for l in labels if l != first])
            parts.append(first if kind > 0.8 or not a.different_pairs else other)
        offset = int(round(t * sr))
        if offset + len(parts) * 2 * sr > n - sr:
            break
        for label in parts:
            clip = draw(label)
            for k, v in enumerate(clip[: n - offset]):
                x[offset + k] += v
            s, e = offset / sr, (offset + len(clip)) / sr
            if events and events[-1][0] == label and abs(events[-1][2] - s) < 1e-9:
                events[-1][2] = e
            else:
                events.append([label, s, e])
            offset += len(clip)
        t = offset / sr + rng.uniform(lo, hi)

    pcm = array.array("h", (max(-32768, min(32767, int(round(v * 32768)))) for v in x))
    if sys.byteorder != "little":
        pcm.byteswap()
    data = pcm.tobytes()
    with open(a.out, "wb") as f:
        total = len(data) * a.repeat
        f.write(b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, 36 + total)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16))
        f.write(b"data" + struct.pack("<I", min(0xFFFFFFFF, total)))
        for _ in range(a.repeat):
            f.write(data)
    with open(a.truth, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "start", "end"])
        for r in range(a.repeat):
            for label, s, e in events:
                w.writerow([label, f"{s + r * a.seconds:.6f}", f"{e + r * a.seconds:.6f}"])
    print(f"{a.out}: {a.seconds * a.repeat:.0f} s, {len(events) * a.repeat} events", file=sys.stderr)


if __name__ == "__main__":
    main()
