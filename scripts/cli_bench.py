#!/usr/bin/env python3
"""The `ced tag` command-line side of the CED benchmark (run by scripts/bench.sh).

* Throughput: tags a directory of --clips generated 10 s WAV files (16 kHz mono 16-bit) with
  `ced tag --jobs 1` and `--jobs 2` at each --precision, wall clock of the whole command
  (process start and model load included), best of --repeat runs: files per second.
* Peak memory: tags one generated one-hour WAV (16 kHz mono 16-bit, 115 MB) with the given
  model (base) and reports the child's maximum resident set size (getrusage via os.wait4).

Generated audio lives in --workdir (clips are kept for the next run; the hour file is deleted
afterwards). Writes the results as JSON to --out.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import wave

import numpy as np

RATE = 16000


def synth(seconds, seed):
    """A deterministic clip with tones, noise and clicks (content does not affect speed)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = rng.uniform(150, 600) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 1) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = 0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.05 * rng.standard_normal(n)
    clicks = (np.arange(n) % (RATE // 3)) < 30
    x[clicks] += 0.5 * rng.standard_normal(clicks.sum())
    return np.clip(x * 32767, -32768, 32767).astype("<i2")


def write_wav(path, samples):
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    os.replace(tmp, path)


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run(cmd):
    """Runs `cmd` with stdout discarded; returns (seconds, max RSS in bytes, exit status).

    The max RSS is read by GNU time (`/usr/bin/time -f %M`) when it is installed: Linux keeps
    a process's RSS high-water mark across execve, and a child this (large) Python process
    spawns starts as a copy of it, so wait4's ru_maxrss would report Python's own RSS for a
    small ced (86 MB for CED-Tiny instead of about 60). time forks ced from its own small
    process. Without it, wait4's figure is used (an upper bound)."""
    full = [GNU_TIME, "-f", "CED_MAXRSS_KB=%M"] + cmd if GNU_TIME else cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    rss = usage.ru_maxrss * 1024
    for line in err.splitlines():
        if line.startswith("CED_MAXRSS_KB="):
            rss = int(line.split("=", 1)[1]) * 1024
    return elapsed, rss, code


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", required=True, help="the release-built ced executable")
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of a model folder to time (repeatable)")
    ap.add_argument("--memory-model", action="append",
                    help="NAME=PATH of a model for the peak-memory runs (repeatable; default: the last --model)")
    ap.add_argument("--workdir", default=os.path.expanduser("~/.cache/ced-bench/audio"))
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2, help="runs per throughput figure (best is kept)")
    ap.add_argument("--hours", type=float, default=1.0, help="length of the long file")
    ap.add_argument("--precision", default="fp32", help="comma-separated precisions for the throughput runs")
    ap.add_argument("--memory-precision", default="fp32", help="comma-separated precisions for the peak-memory runs")
    ap.add_argument("--out")
    args = ap.parse_args()

    clip_dir = os.path.join(args.workdir, f"clips-{args.clips}x10s")
    os.makedirs(clip_dir, exist_ok=True)
    for i in range(args.clips):
        path = os.path.join(clip_dir, f"clip{i:04d}.wav")
        if not os.path.exists(path):
            write_wav(path, synth(10, seed=i))

    result = {"clips": args.clips, "clip_seconds": 10, "clip_format": "16 kHz mono s16 WAV", "precision": args.precision,
              "memory_precision": args.memory_precision,
              "throughput": {}, "memory": None}
    print(f"ced tag throughput: {args.clips} × 10 s WAV files, wall clock incl. start-up and model load, best of {args.repeat}",
          flush=True)
    models = [m.split("=", 1) for m in args.model]
    for name, path in models:
        for precision in args.precision.split(","):
            for jobs in (1, 2):
                cmd = [args.ced, "tag", "--model", path, "--precision", precision, "--jobs", str(jobs),
                       "--quiet", "--format", "jsonl", clip_dir]
                runs = [run(cmd) for _ in range(args.repeat)]
                best = min(r[0] for r in runs)
                fig = {"seconds": round(best, 3), "files_per_s": round(args.clips / best, 2),
                       "ms_per_clip": round(1000 * best / args.clips, 2),
                       "max_rss_mb": round(max(r[1] for r in runs) / 2 ** 20, 1)}
                result["throughput"][f"{name}/{precision}/jobs{jobs}"] = fig
                print(f"  {name:5} {precision} --jobs {jobs}: {fig['files_per_s']:7.2f} files/s ({best:.2f} s, "
                      f"max RSS {fig['max_rss_mb']} MB)", flush=True)

    # Peak memory per model and precision: one 10 s clip, then one long file.
    mem_models = [m.split("=", 1) for m in args.memory_model] if args.memory_model else [models[-1]]
    long_path = os.path.join(args.workdir, "long.wav")
    seconds = int(args.hours * 3600)
    block = synth(60, seed=12345)
    with wave.open(long_path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for _ in range(seconds // 60):
            w.writeframes(block.tobytes())
        w.writeframes(block[: (seconds % 60) * RATE].tobytes())
    one = os.path.join(clip_dir, "clip0000.wav")
    result["memory"] = {"audio_seconds": seconds, "file_mb": round((seconds * RATE * 2 + 44) / 2 ** 20, 1), "runs": {}}
    try:
        for name, path in mem_models:
            for precision in args.memory_precision.split(","):
                base = [args.ced, "tag", "--model", path, "--precision", precision, "--jobs", "1", "--quiet", "--format", "json"]
                _, clip_rss, _ = run(base + [one])
                elapsed, rss, _ = run(base + [long_path])
                fig = {"clip_max_rss_mb": round(clip_rss / 2 ** 20, 1), "long_max_rss_mb": round(rss / 2 ** 20, 1),
                       "long_seconds": round(elapsed, 2)}
                result["memory"]["runs"][f"{name}/{precision}"] = fig
                print(f"  peak memory, {name} {precision}: one 10 s clip {fig['clip_max_rss_mb']:.0f} MB, "
                      f"a {seconds / 3600:g} h file {fig['long_max_rss_mb']:.0f} MB ({elapsed:.1f} s, "
                      f"{seconds / elapsed:.0f}× real time)", flush=True)
    finally:
        os.remove(long_path)
    version = subprocess.run(["/usr/bin/time", "-f", "%M", args.ced, "--version"], capture_output=True, text=True)
    try:
        result["memory"]["ced_version_max_rss_mb"] = round(int(version.stderr.strip().splitlines()[-1]) / 1024, 1)
    except (ValueError, IndexError):
        pass
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
