#!/usr/bin/env python3
"""The checks of issue 14 against the built `ced` tool, with numbers:

1. events in a file: `ced tag --events --window 2 --hop 0.5 --threshold 0.7 --merge-gap 0.5
   --min-duration 0.5 --format json` on a 4-minute recording assembled from
   distill/test clips (scripts/events_recording.py), event-based F1 (same label, onset and
   offset within 1 s);
2. stream equals file: the same recording as a WAV stream (data size 0xFFFFFFFF) written in
   blocks of random sizes into `ced listen --format jsonl -`: same labels, times within 0.01 s;
3. endless input (--hour): one hour (the recording 15 times) piped into `ced listen -`:
   peak RSS, real-time factor, F1;
4. bad input: a stream cut mid-sample, garbage, a missing device, a sample rate of 0 in a
   header: non-zero exit, a message, no hang.

    swift build -c release && scripts/event_check.py [--ced .build/release/ced] [--hour]

Standard library only. Exit status 1 when a check fails.
"""
import argparse
import csv
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def f1(truth, found, tol=1.0):
    used = [False] * len(found)
    tp = 0
    for label, s, e in truth:
        best, cost = None, None
        for j, d in enumerate(found):
            if used[j] or d["label"] != label:
                continue
            on, off = abs(d["start"] - s), abs(d["end"] - e)
            if on <= tol and off <= tol and (cost is None or on + off < cost):
                best, cost = j, on + off
        if best is not None:
            used[best] = True
            tp += 1
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), p, r


def read_truth(path):
    with open(path) as f:
        return [(r["label"], float(r["start"]), float(r["end"])) for r in csv.DictReader(f)]


def jsonl_events(text):
    out = []
    for line in text.splitlines():
        o = json.loads(line)
        if "label" in o and not o.get("ongoing"):
            out.append(o)
    return out


def same_events(a, b, tol=0.01):
    key = lambda e: (round(e["start"], 2), e["index"])
    a, b = sorted(a, key=key), sorted(b, key=key)
    if len(a) != len(b):
        return False, f"{len(a)} vs {len(b)} events"
    worst = 0.0
    for x, y in zip(a, b):
        if x["label"] != y["label"]:
            return False, f"{x['label']} vs {y['label']} at {x['start']}"
        worst = max(worst, abs(x["start"] - y["start"]), abs(x["end"] - y["end"]))
    return worst <= tol, f"{len(a)} events, largest time difference {worst:.3f} s"


def wav_stream_header(rate=16000, channels=1, bits=16, size=0xFFFFFFFF):
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", size) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits) + b"data" + struct.pack("<I", size))


def run_listen(ced, args, chunks, timeout):
    """Runs `ced listen ARGS -`, writing `chunks` (an iterable of bytes) to its stdin.
    Returns (status, stdout, stderr, seconds, peak RSS of the child in MB)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([ced, "listen"] + args + ["-"], stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            for c in chunks:
                p.stdin.write(c)
            p.stdin.close()
        except BrokenPipeError:
            pass
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, raw_status, ru = os.wait4(p.pid, 0)  # this child's own resource usage
        timed_out = not timer.is_alive()
        timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(raw_status)
        status = "timeout" if timed_out else p.returncode
        out.seek(0)
        err.seek(0)
        rss = ru.ru_maxrss / 1024 if sys.platform != "darwin" else ru.ru_maxrss / (1 << 20)
        return status, out.read().decode(), err.read().decode(), time.monotonic() - t0, rss


def random_blocks(data, rng, largest=20000):
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        yield data[i:i + n]
        i += n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", default=os.path.join(ROOT, ".build", "release", "ced"))
    ap.add_argument("--shared", default=os.environ.get("CED_SHARED_DIR") or os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--model", default=None, help="default: the shared teacher-synth4")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--hour", action="store_true", help="also pipe one hour into ced listen (a few minutes)")
    a = ap.parse_args()
    model = a.model or os.path.join(a.shared, "reference", "distill", "teacher-synth4")
    tmp = tempfile.mkdtemp(prefix="ced-event-check-")
    rec, truth_csv = os.path.join(tmp, "rec.wav"), os.path.join(tmp, "rec.csv")
    subprocess.run([sys.executable, os.path.join(HERE, "events_recording.py"), "--shared", a.shared, "--seed", str(a.seed),
                    "--out", rec, "--truth", truth_csv], check=True)
    truth = read_truth(truth_csv)
    rules = ["--window", "2", "--hop", "0.5", "--threshold", "0.7", "--merge-gap", "0.5", "--min-duration", "0.5"]
    results = []

    def report(name, ok, detail):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    # 1. File.
    t0 = time.monotonic()
    r = subprocess.run([a.ced, "tag", "--events", "--model", model] + rules + ["--format", "json", rec],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report("events in a file", False, r.stderr.strip())
        return 1
    file_events = json.loads(r.stdout)[0]["events"]
    score, p, rc = f1(truth, file_events)
    report("events in a file (F1 >= 0.85)", score >= 0.85,
           f"F1 {score:.3f} (precision {p:.3f}, recall {rc:.3f}; {len(truth)} true, {len(file_events)} found) in {time.monotonic() - t0:.1f} s")

    # 2. Stream = file.
    with open(rec, "rb") as f:
        f.seek(44)
        pcm = f.read()
    rng = random.Random(a.seed)
    status, out, err, secs, _ = run_listen(a.ced, ["--model", model] + rules + ["--format", "jsonl", "--quiet"],
                                           random_blocks(wav_stream_header() + pcm, rng), timeout=600)
    if status != 0:
        report("stream equals file", False, f"exit {status}: {err.strip()}")
    else:
        ok, detail = same_events(file_events, jsonl_events(out))
        report("stream equals file (WAV stream, random blocks)", ok, detail + f"; {secs:.1f} s")

    # 3. One hour.
    if a.hour:
        hour_truth = [(l, s + k * 240.0, e + k * 240.0) for k in range(15) for (l, s, e) in truth]
        status, out, err, secs, rss = run_listen(a.ced, ["--model", model] + rules + ["--format", "jsonl"],
                                                 [wav_stream_header()] + [pcm] * 15, timeout=3600)
        if status != 0:
            report("one hour", False, f"exit {status}: {err.strip()}")
        else:
            events = jsonl_events(out)
            score, p, rc = f1(hour_truth, events)
            report("one hour piped into ced listen - (peak RSS <= 250 MB)", rss <= 250,
                   f"peak RSS {rss:.0f} MB, {secs:.1f} s for 3600 s of audio ({3600 / secs:.0f}x real time), F1 {score:.3f}, "
                   f"{len(events)} events; {err.strip().splitlines()[-1] if err.strip() else ''}")

    # 4. Bad input.
    cases = [
        ("stream cut mid-sample", ["--format", "jsonl"], [wav_stream_header(), pcm[:16001 * 2 + 1]]),
        ("garbage on stdin", ["--format", "jsonl"], [bytes(rng.randrange(256) for _ in range(100000))]),
        ("sample rate 0 in the header", ["--format", "jsonl"], [wav_stream_header(rate=0), pcm[:32000]]),
        ("empty stdin", ["--format", "jsonl"], []),
        ("cut inside the header", ["--format", "jsonl"], [wav_stream_header()[:30]]),
    ]
    for name, args, chunks in cases:
        status, out, err, secs, _ = run_listen(a.ced, ["--model", model] + args, chunks, timeout=60)
        msg = err.strip().splitlines()[-1] if err.strip() else ""
        report(f"bad input: {name}", status not in (0, "timeout") and status > 0 and "error" in err,
               f"exit {status} in {secs:.1f} s: {msg}")
    t0 = time.monotonic()
    try:
        r = subprocess.run([a.ced, "listen", "--model", model, "--input", "alsa:hw:99,0"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        status, msg = r.returncode, (r.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        status, msg = "timeout", ""
    report("bad input: missing device", status not in (0, "timeout") and "error" in msg,
           f"exit {status} in {time.monotonic() - t0:.1f} s: {msg}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
