#!/usr/bin/env python3
"""Live-tagging cost and latency of `ced listen`, per model and hop (issue 14, item 5).

For each model and hop, the assembled recording (scripts/events_recording.py) is written into
`ced listen --windows --format jsonl -` as a WAV stream **paced in real time** (20 ms blocks on
an absolute schedule), and every line is timestamped when it arrives:

- CPU s / audio s: user + system CPU time of the ced process (its own rusage) over the
  seconds of audio;
- window latency: arrival of a window's line − the moment its last sample existed (a block
  is written when its last sample is due, as a capture device delivers it);
- event latency: arrival of an event − the moment the input passed the event's end (its
  reported end; with --truth-model, also its true end in the recording);
- throughput: the same recording piped as fast as possible (ced's own "× real time").

tiny is the shared fixture (../shared/reference/models/tiny); mini and base are seeded random
weights of the published architectures, written by `ced bench --export` (speed does not
depend on the values; their events are arbitrary but their cost and latency are real).
teacher-synth4, which knows the recording's sounds, gives the latency from the true ends.

    swift build -c release && scripts/listen_bench.py [--seconds 60] [--models tiny,mini,base] [--hops 1,0.5]

Standard library only. Prints a Markdown table (and --json FILE writes the numbers).
"""
import argparse
import csv
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def wav_header(rate=16000):
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


def listen(ced, model, hop, pcm, paced, extra=()):
    """Runs ced listen on the PCM; returns (lines with arrival times, t0, rusage, wall seconds, stderr)."""
    args = [ced, "listen", "--model", model, "--window", "2", "--hop", str(hop), "--format", "jsonl", "--windows"] + list(extra) + ["-"]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, err = [], []

    def read_out():
        for raw in p.stdout:
            lines.append((time.monotonic(), json.loads(raw)))

    def read_err():
        err.append(p.stderr.read().decode())

    threads = [threading.Thread(target=read_out), threading.Thread(target=read_err)]
    for t in threads:
        t.start()
    p.stdin.write(wav_header())
    p.stdin.flush()
    block = 320 * 2  # 20 ms of 16 kHz 16-bit mono
    t0 = time.monotonic()
    start = time.monotonic()
    for i in range(0, len(pcm), block):
        if paced:
            # A live source delivers a block once its last sample exists.
            due = t0 + (i // 2 + block // 2) / 16000
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        p.stdin.write(pcm[i:i + block])
        if paced:
            p.stdin.flush()
    p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    for t in threads:
        t.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ced listen failed: {''.join(err)}")
    return lines, t0, ru, wall, "".join(err)


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", default=os.path.join(ROOT, ".build", "release", "ced"))
    ap.add_argument("--shared", default=os.environ.get("CED_SHARED_DIR") or os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--models", default="tiny,mini,base")
    ap.add_argument("--hops", default="1,0.5")
    ap.add_argument("--seconds", type=float, default=60, help="paced audio per configuration")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ced-listen-bench-")
    rec, truth_csv = os.path.join(tmp, "rec.wav"), os.path.join(tmp, "rec.csv")
    subprocess.run([sys.executable, os.path.join(HERE, "events_recording.py"), "--shared", a.shared, "--seconds", str(a.seconds),
                    "--out", rec, "--truth", truth_csv], check=True)
    with open(rec, "rb") as f:
        pcm = f.read()[44:]
    with open(truth_csv) as f:
        truth = [(r["label"], float(r["start"]), float(r["end"])) for r in csv.DictReader(f)]

    sizes = [m.strip() for m in a.models.split(",") if m.strip()]
    random_sizes = [m for m in sizes if m != "tiny"]
    paths = {"tiny": os.path.join(a.shared, "reference", "models", "tiny")}
    if random_sizes:
        export = os.path.join(tmp, "export")
        subprocess.run([a.ced, "bench", "--quick", "--models", ",".join(random_sizes), "--precision", "fp32", "--export", export],
                       check=True, stdout=subprocess.DEVNULL)
        for m in random_sizes:
            paths[m] = os.path.join(export, "models", f"ced-{m}")
    teacher = os.path.join(a.shared, "reference", "distill", "teacher-synth4")
    rules = ["--threshold", "0.7", "--merge-gap", "0.5", "--min-duration", "0.5"]
    rows = []
    configs = [(m, paths[m]) for m in sizes] + [("teacher-synth4", teacher)]
    for hop in [float(h) for h in a.hops.split(",")]:
        for name, path in configs:
            lines, t0, ru, wall, err = listen(a.ced, path, hop, pcm, paced=True, extra=rules)
            audio = len(pcm) / 2 / 16000
            windows = [(t, o) for t, o in lines if "window" in o]
            events = [(t, o) for t, o in lines if "label" in o]
            win_lat = [t - (t0 + o["end"]) for t, o in windows]
            ev_lat = [t - (t0 + o["end"]) for t, o in events]
            true_lat = []
            if name == "teacher-synth4":
                for t, o in events:
                    match = [e for (l, s, e) in truth if l == o["label"] and abs(s - o["start"]) <= 1 and abs(e - o["end"]) <= 1]
                    if match:
                        true_lat.append(t - (t0 + match[0]))
            _, _, _, fast_wall, fast_err = listen(a.ced, path, hop, pcm, paced=False, extra=rules + ["--quiet"])
            row = {
                "model": name, "hop": hop, "audio_s": audio,
                "cpu_per_audio_s": (ru.ru_utime + ru.ru_stime) / audio,
                "window_latency_median_s": statistics.median(win_lat), "window_latency_p95_s": pct(win_lat, 0.95),
                "event_latency_median_s": statistics.median(ev_lat) if ev_lat else None,
                "event_latency_p95_s": pct(ev_lat, 0.95) if ev_lat else None,
                "events": len(events),
                "true_end_latency_median_s": statistics.median(true_lat) if true_lat else None,
                "true_end_latency_p95_s": pct(true_lat, 0.95) if true_lat else None,
                "realtime_factor": audio / fast_wall,
                "dropped": "0 dropped" not in err,
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"Paced {a.seconds:.0f} s of audio per row (20 ms blocks, real time), window 2 s, threshold 0.7, merge gap 0.5 s, "
          f"min duration 0.5 s, fp32, load average at the end {' '.join(load)}.\n")
    print("| model | hop | CPU s / audio s | window latency median (p95) | event latency from its reported end, median (p95) "
          "| from the true end, median (p95) | throughput (piped as fast as possible) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        def s(k):
            v = r[k]
            return "—" if v is None else f"{v:.2f} s"
        true = f"{s('true_end_latency_median_s')} ({s('true_end_latency_p95_s')})" if r["true_end_latency_median_s"] is not None else "—"
        print(f"| {r['model']} | {r['hop']:g} s | {r['cpu_per_audio_s']:.3f} | {s('window_latency_median_s')} ({s('window_latency_p95_s')}) "
              f"| {s('event_latency_median_s')} ({s('event_latency_p95_s')}) | {true} | {r['realtime_factor']:.0f}× real time |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "loadavg": load}, f, indent=1)


if __name__ == "__main__":
    main()
