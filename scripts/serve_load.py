#!/usr/bin/env python3
"""Memory and descriptors of a running `ced serve` over many requests (scripts/serve_bench.sh):
after a warm-up, N requests at a given concurrency (classification of the clip 70 %, events
10 %, embeddings 10 %, and bad requests 10 %: 415, 422 garbage, 400), keep-alive connections;
the server's RSS and open descriptors are read from /proc before and after. Every answer to
the same request must be byte for byte the same. Standard library only.

    scripts/serve_load.py --url http://127.0.0.1:8080 --clip clip.wav --pid PID --requests 10000
"""
import argparse
import http.client
import os
import sys
import threading
import time
import urllib.parse


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    clip = open(a.clip, "rb").read()
    kinds = [("POST", "/v1/audio/classification?top_k=5", "audio/wav", clip, 200)] * 7 + [
        ("POST", "/v1/audio/events?threshold=0.3", "audio/wav", clip, 200),
        ("POST", "/v1/audio/embeddings", "audio/wav", clip, 200),
        ("POST", "/v1/audio/classification", "text/plain", b"not audio", 415),
        ("POST", "/v1/audio/classification", "audio/wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", 422),
        ("POST", "/v1/audio/classification?top_k=-3", "audio/wav", clip, 400),
    ]
    answers, failures = {}, []
    lock = threading.Lock()
    counter = {"next": 0}

    def worker(total):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        while True:
            with lock:
                i = counter["next"]
                if i >= total:
                    break
                counter["next"] += 1
            method, path, ctype, body, status = kinds[i % len(kinds)]
            try:
                conn.request(method, path, body=body, headers={"Content-Type": ctype})
                r = conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
            except Exception as e:  # noqa: BLE001
                failures.append(f"{path}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                continue
            key = (path, ctype, len(body))
            with lock:
                if r.status != status:
                    failures.append(f"{path} ({ctype}): {r.status} instead of {status}: {data[:200]!r}")
                elif key in answers and status == 200 and answers[key] != data:
                    failures.append(f"{path}: the answer changed")
                answers.setdefault(key, data)
        conn.close()

    def run(total):
        counter["next"] = 0
        threads = [threading.Thread(target=worker, args=(total,)) for _ in range(a.concurrency)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.time() - t0

    run(a.warmup)
    time.sleep(1)
    r0, f0 = rss_kb(a.pid), fds(a.pid)
    trace = []
    stop = threading.Event()

    def monitor():      # RSS every tenth of the run
        step = max(1, a.requests // 10)
        mark = step
        while not stop.is_set():
            if counter["next"] >= mark:
                trace.append((mark, rss_kb(a.pid)))
                mark += step
            time.sleep(0.05)

    threading.Thread(target=monitor, daemon=True).start()
    seconds = run(a.requests)
    stop.set()
    time.sleep(1)
    r1, f1 = rss_kb(a.pid), fds(a.pid)
    print(f"serve_load: {a.requests} requests at concurrency {a.concurrency} in {seconds:.0f} s ({a.requests / seconds:.1f}/s) after {a.warmup} warm-up")
    print(f"serve_load: RSS {r0 / 1024:.1f} MB → {r1 / 1024:.1f} MB ({(r1 - r0) / 1024:+.1f} MB, target ≤ +10), "
          f"open descriptors {f0} → {f1} ({f1 - f0:+d}, target ≤ 0)")
    print("serve_load: RSS along the run (requests: MB): " + ", ".join(f"{n}: {kb / 1024:.1f}" for n, kb in trace))
    for f in failures[:10]:
        print("serve_load: FAIL " + f)
    ok = not failures and r1 - r0 <= 10 * 1024 and f1 <= f0
    print("serve_load: " + ("passed" if ok else f"FAILED ({len(failures)} bad answers)"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
