#!/usr/bin/env python3
"""The robustness checks of issue 21 against a `ced serve` started here:

1. bad input beside good requests: while 8 clients send good classification requests in a
   loop (every answer must be 200 and byte for byte the first one), each hostile request is
   sent and timed: no Content-Type, text/plain, a declared body over the limit, a streamed
   body over the limit, garbage audio, a WAV with a NaN sample, a WAV header of 0 Hz, a bad
   parameter, a wrong model, a wrong API key, over capacity (slots held by stalled uploads),
   and a body that never finishes (408 after --timeout). Each must get its status as JSON in
   ≤ 100 ms (the stalled body: at the timeout; the streamed body: when the limit is hit);
2. (--hour) one hour of audio over the WebSocket (s16le, as fast as the server takes it):
   the server's RSS sampled all along must stay flat after warm-up (the peak of the run's last
   tenth within 10 MB of the peak of its second tenth), and the events must equal
   `ced listen -` on the same audio.

    swift build -c release && scripts/serve_check.py [--model DIR] [--hour]

Standard library only (the WebSocket client is scripts/ced_stream_client.py).
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from ced_stream_client import WebSocket  # noqa: E402

KEY = "serve-check-key"


def start(ced, model, *args):
    p = subprocess.Popen([ced, "serve", "--model", model, "--port", "0", "--quiet", *args], stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        line = p.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line or "")
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    p.kill()
    sys.exit("serve_check: the server did not start")


def raw(port, head, body=b"", send=None, timeout=30):
    """Sends a request over a fresh socket; returns (status, body text, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.time()
    s.sendall(head.encode() + (body if send is None else body[:send]))
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
            if b"\r\n\r\n" in data:
                h, rest = data.split(b"\r\n\r\n", 1)
                m = re.search(rb"content-length: *(\d+)", h, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    dt = time.time() - t0
    s.close()
    status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else 0
    return status, data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"), dt


def streamed(port, head, chunk, total):
    """A chunked upload that goes on and on: the time until the server answers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.time()
    s.sendall(head.encode())
    sent = 0
    data = b""
    s.settimeout(0.001)
    try:
        while sent < total:
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
            try:
                d = s.recv(65536)
                if d:
                    data += d
                    break
            except socket.timeout:
                pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(10)
    try:
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else 0
    return status, sent, time.time() - t0


def wav_bytes(samples, rate=16000, float32=False):
    header_fmt = struct.pack("<HHIIHH", 3 if float32 else 1, 1, rate, rate * (4 if float32 else 2), 4 if float32 else 2, 32 if float32 else 16)
    data = b"".join(struct.pack("<f", v) for v in samples) if float32 else b"".join(struct.pack("<h", int(v * 32767)) for v in samples)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + header_fmt + b"data" + struct.pack("<I", len(data)) + data


def bad_input(a):
    server, port = start(a.ced, a.model, "--api-key", KEY, "--max-body-mb", "2", "--timeout", "5", "--max-concurrency", "12")
    auth = f"Authorization: Bearer {KEY}\r\n"
    clip = wav_bytes([0.3 * math.sin(2 * math.pi * 440 * i / 16000) for i in range(10 * 16000)])
    stop = threading.Event()
    results = {"ok": 0, "bad": [], "busy": 0}
    first = {}
    lock = threading.Lock()

    def good():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            try:
                conn.request("POST", "/v1/audio/classification", body=clip, headers={"Content-Type": "audio/wav", "Authorization": "Bearer " + KEY})
                r = conn.getresponse()
                body = r.read()
            except Exception as e:  # noqa: BLE001
                with lock:
                    results["bad"].append(str(e))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            if r.status == 503:      # over capacity while the capacity check holds slots: retry
                with lock:
                    results["busy"] += 1
                time.sleep(0.05)
                continue
            with lock:
                first.setdefault("body", body)
                if r.status == 200 and body == first["body"]:
                    results["ok"] += 1
                else:
                    results["bad"].append(f"{r.status} {body[:120]!r}")
        conn.close()

    threads = [threading.Thread(target=good) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    nan = wav_bytes([0.1] * 4000, float32=True)
    nan = nan[:44 + 4 * 1234] + struct.pack("<f", float("nan")) + nan[44 + 4 * 1235:]
    zero_rate = bytearray(wav_bytes([0.1] * 400))
    zero_rate[24:28] = b"\0\0\0\0"
    post = "POST /v1/audio/classification HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    cases = [
        ("no Content-Type", post + auth + f"Content-Length: {len(clip)}\r\n\r\n", clip, 415),
        ("text/plain", post + auth + "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n", b"hello", 415),
        ("declared body over the limit", post + auth + "Content-Type: audio/wav\r\nContent-Length: 500000000\r\n\r\n", b"", 413),
        ("garbage audio", post + auth + "Content-Type: audio/wav\r\nContent-Length: 4000\r\n\r\n", os.urandom(4000), 422),
        ("a NaN sample", post + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(nan)}\r\n\r\n", nan, 422),
        ("0 Hz header", post + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(zero_rate)}\r\n\r\n", bytes(zero_rate), 422),
        ("bad parameter", post.replace("classification", "classification?top_k=many") + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(clip)}\r\n\r\n", clip, 400),
        ("wrong model", post.replace("classification", "classification?model=ced-huge") + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(clip)}\r\n\r\n", clip, 404),
        ("wrong API key", post + "Authorization: Bearer nope\r\n" + f"Content-Type: audio/wav\r\nContent-Length: {len(clip)}\r\n\r\n", clip, 401),
        ("bad event option", post.replace("classification", "events?release=0.9&threshold=0.2") + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(clip)}\r\n\r\n", clip, 400),
    ]
    failures = []
    print("| bad request (beside 8 good ones) | status | answered after |")
    print("| --- | ---: | ---: |")
    for name, head, body, want in cases:
        status, text, dt = raw(port, head, body)
        ok = status == want and '"error"' in text and dt <= 0.1
        print(f"| {name} | {status} | {dt * 1000:.0f} ms |" + ("" if ok else f" FAIL (want {want} in ≤ 100 ms: {text[:100]})"))
        if not ok:
            failures.append(name)
    # A chunked upload over the limit: answered when the limit is hit.
    status, sent, dt = streamed(port, post + auth + "Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n", b"\0" * 65536, 50 << 20)
    ok = status == 413 and sent <= 4 << 20
    print(f"| streamed body over the 2 MB limit | {status} | {dt * 1000:.0f} ms, after {sent / 1048576:.1f} MB sent |" + ("" if ok else " FAIL"))
    if not ok:
        failures.append("streamed body")
    # Over capacity: 4 stalled uploads hold the remaining slots (8 good + 4 = --max-concurrency 12).
    stalled = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall((post + auth + "Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\n").encode() + b"RIFF")
        stalled.append(s)
    time.sleep(0.3)
    status, text, dt = raw(port, post + auth + f"Content-Type: audio/wav\r\nContent-Length: {len(clip)}\r\n\r\n", clip)
    ok = status == 503 and dt <= 0.1 and "over_capacity" in text
    print(f"| over capacity (4 stalled uploads fill --max-concurrency 12) | {status} | {dt * 1000:.0f} ms |" + ("" if ok else f" FAIL {text[:100]}"))
    if not ok:
        failures.append("over capacity")
    # The stalled uploads get 408 at --timeout (5 s).
    t0 = time.time()
    codes = []
    for s in stalled:
        s.settimeout(15)
        try:
            d = s.recv(4096)
        except socket.timeout:
            d = b""
        codes.append(int(d.split(b" ")[1]) if d.startswith(b"HTTP/") else 0)
        s.close()
    ok = codes == [408] * 4
    print(f"| body that never finishes (--timeout 5) | {codes[0]} | {time.time() - t0 + 0.3:.1f} s after the capacity check |" + ("" if ok else f" FAIL {codes}"))
    if not ok:
        failures.append("stalled body")
    stop.set()
    for t in threads:
        t.join()
    print(f"good requests beside them: {results['ok']} answered 200 with the same detections, {results['busy']} retried after 503 "
          f"during the capacity check, {len(results['bad'])} otherwise" +
          ("" if not results["bad"] else f": {results['bad'][:3]}"))
    if results["bad"] or results["ok"] == 0:
        failures.append("good requests disturbed")
    server.terminate()
    server.wait(timeout=30)
    return failures


def hour(a):
    work = tempfile.mkdtemp(prefix="ced-hour-")
    wav = os.path.join(work, "hour.wav")
    subprocess.run([sys.executable, os.path.join(HERE, "events_recording.py"), "--shared", a.shared, "--seconds", "240", "--repeat", "15",
                    "--out", wav, "--truth", os.path.join(work, "hour.csv")], check=True, stdout=subprocess.DEVNULL)
    teacher = os.path.join(a.shared, "reference", "distill", "teacher-synth4")
    options = {"window": 2, "hop": 0.5, "threshold": 0.7, "merge_gap": 0.5, "min_duration": 0.5}
    listen = subprocess.run([a.ced, "listen", "--model", teacher, "--format", "jsonl", "--quiet", "--window", "2", "--hop", "0.5",
                             "--threshold", "0.7", "--merge-gap", "0.5", "--min-duration", "0.5", "-"],
                            stdin=open(wav, "rb"), capture_output=True, text=True, check=True)
    expected = [json.loads(l) for l in listen.stdout.splitlines() if l.strip()]
    server, port = start(a.ced, teacher)
    rss = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            with open(f"/proc/{server.pid}/status") as f:
                rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    w = wave.open(wav)
    ws = WebSocket(f"ws://127.0.0.1:{port}/v1/audio/stream")
    ws.send_text(json.dumps({"type": "start", "sample_rate": w.getframerate(), "format": "s16le", "channels": 1, "windows": False, **options}))
    t0 = time.time()

    def feed():
        while True:
            data = w.readframes(16000)
            if not data:
                break
            ws.send_binary(data)
        ws.send_text(json.dumps({"type": "stop"}))

    threading.Thread(target=feed, daemon=True).start()
    events, summary = [], None
    while True:
        kind, body = ws.receive()
        if kind == "close":
            break
        m = json.loads(body)
        if m["type"] == "event" and not m["ongoing"]:
            events.append({k: m[k] for k in ("label", "index", "start", "end", "score", "mean_score")})
        elif m["type"] in ("done", "error"):
            summary = m
            ws.close()
            break
    seconds = time.time() - t0
    done.set()
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)
    # The first tenth of the run is the warm-up (the model's workspace, the stream's buffers,
    # the first RSS samples are from before the stream started): memory is flat when the peak
    # of the last tenth is within 10 MB of the peak of the second.
    tenth = max(1, len(rss) // 10)
    first, last = rss[tenth: 2 * tenth], rss[-tenth:]
    growth = (max(last) - max(first)) / 1024
    same = events == expected
    print("hour stream: server RSS peak per tenth of the run (MB): " + ", ".join(f"{max(rss[i * tenth:(i + 1) * tenth] or [0]) / 1024:.1f}" for i in range(10)))
    print(f"hour stream: {summary}, {seconds:.0f} s ({3600 / seconds:.0f}× real time); server RSS {min(rss) / 1024:.0f}–{max(rss) / 1024:.0f} MB, "
          f"second tenth (after warm-up) peak {max(first) / 1024:.1f} MB, last tenth peak {max(last) / 1024:.1f} MB ({growth:+.1f} MB); "
          f"{len(events)} events, {'equal to' if same else 'DIFFERENT from'} ced listen's {len(expected)}")
    failures = []
    if not same:
        failures.append("hour stream events")
    if growth > 10:
        failures.append("hour stream memory")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", default=os.path.join(ROOT, ".build/release/ced"))
    ap.add_argument("--shared", default=os.environ.get("CED_SHARED_DIR") or os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--model", help="default: the shared tiny model")
    ap.add_argument("--hour", action="store_true")
    a = ap.parse_args()
    a.model = a.model or os.path.join(a.shared, "reference", "models", "tiny")
    failures = bad_input(a)
    if a.hour:
        failures += hour(a)
    print("serve_check: " + ("passed" if not failures else f"FAILED: {failures}"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
