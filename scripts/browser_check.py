#!/usr/bin/env python3
"""The page of `ced serve` in a real headless browser (Chromium + chromedriver + selenium):

1. file: the page gets a recording through its file input and must show the recording's
   top tags (those of POST /v1/audio/classification) and its events (exactly those of
   POST /v1/audio/events with the page's options);
2. microphone: Chromium's fake microphone plays the same recording
   (--use-file-for-fake-audio-capture), the page streams it over the WebSocket and must show
   the same events live (same classes in the same order, onsets and offsets within 1 s: the
   browser resamples and starts capturing a little before the stream opens).

A screenshot of each case is kept in the output folder (printed at the end). Exit status 1
when a check fails.

    swift build -c release && scripts/browser_check.py [--ced .build/release/ced] [--out out/browser]

Needs: Debian's chromium and chromium-driver, `pip install selenium` (and openapi-spec-validator,
with which /openapi.json is validated too).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPTIONS = {"window": 2, "hop": 0.5, "threshold": 0.7, "merge_gap": 0.5, "min_duration": 0.5}
PAGE_INPUTS = {"window": "opt-window", "hop": "opt-hop", "threshold": "opt-threshold", "merge_gap": "opt-merge-gap", "min_duration": "opt-min-duration"}


def post(base, path, wav, fields):
    boundary = "ced-browser-check"
    body = b""
    for k, v in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    body += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{os.path.basename(wav)}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
    body += open(wav, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=120) as r:
        return json.loads(r.read())


def start_server(ced, model):
    p = subprocess.Popen([ced, "serve", "--model", model, "--port", "0", "--quiet"], stderr=subprocess.PIPE, text=True)
    port = None
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        p.kill()
        sys.exit("browser_check: ced serve did not start")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, f"http://127.0.0.1:{port}"


def browser(extra=()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1050",
              "--no-proxy-server", "--autoplay-policy=no-user-gesture-required", *extra]:
        o.add_argument(a)
    binary = os.environ.get("CHROMIUM") or next((b for b in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"] if os.path.exists(b)), None)
    if binary:
        o.binary_location = binary
    driver = os.environ.get("CHROMEDRIVER") or next((d for d in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] if os.path.exists(d)), None)
    return webdriver.Chrome(service=Service(driver) if driver else Service(), options=o)


def set_options(d):
    for k, v in OPTIONS.items():
        d.execute_script("document.getElementById(arguments[0]).value = arguments[1]", PAGE_INPUTS[k], str(v))


def wait_state(d, states, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = d.execute_script("return document.body.dataset.state")
        if s in states:
            return s
        time.sleep(0.2)
    return d.execute_script("return document.body.dataset.state + ': ' + document.getElementById('status').textContent")


def table_events(d, final_only=True):
    rows = d.execute_script("""
        return [...document.querySelectorAll('#events tbody tr')].map(r => ({cls: r.className, cells: [...r.cells].map(c => c.textContent)}));""")
    out = []
    for r in rows:
        if final_only and r["cls"] != "final":
            continue
        label, start, end = r["cells"][0], float(r["cells"][1]), float(r["cells"][2].rstrip("…"))
        out.append((label, start, end))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ced", default=os.path.join(ROOT, ".build/release/ced"))
    ap.add_argument("--shared", default=os.environ.get("CED_SHARED_DIR") or os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "browser"))
    ap.add_argument("--seconds", type=float, default=24)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    model = os.path.join(a.shared, "reference", "distill", "teacher-synth4")
    work = tempfile.mkdtemp(prefix="ced-browser-")
    wav = os.path.join(work, "recording.wav")
    subprocess.run([sys.executable, os.path.join(HERE, "events_recording.py"), "--shared", a.shared, "--seconds", str(a.seconds),
                    "--seed", "3", "--out", wav, "--truth", os.path.join(work, "truth.csv")], check=True, stdout=subprocess.DEVNULL)
    server, base = start_server(a.ced, model)
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    try:
        expected = post(base, "/v1/audio/events", wav, OPTIONS)[0]["events"]
        tags = [t["label"] for t in post(base, "/v1/audio/classification", wav, {"top_k": 5})["detections"]]
        want = [(e["label"], e["start"], e["end"]) for e in expected]
        print(f"browser_check: {base}, recording {a.seconds:.0f} s with {len(want)} events: " +
              ", ".join(f"{l} {s:.2f}-{e:.2f}" for l, s, e in want), flush=True)
        check(len(want) >= 2, "the recording has events to find")
        try:
            from openapi_spec_validator import validate
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            validate(json.loads(opener.open(base + "/openapi.json", timeout=30).read()))
            check(True, "/openapi.json is a valid OpenAPI document (openapi-spec-validator)")
        except ImportError:
            print("skip /openapi.json validation: pip install openapi-spec-validator")
        except Exception as e:  # noqa: BLE001
            check(False, f"/openapi.json is a valid OpenAPI document: {e}")

        # 1. A file through the page's file input.
        d = browser()
        try:
            d.get(base + "/")
            check(wait_state(d, {"ready"}, 20) == "ready", "the page loads")
            set_options(d)
            d.find_element("id", "file").send_keys(wav)
            state = wait_state(d, {"shown", "error"}, 120)
            check(state == "shown", f"the page shows the file (state {state})")
            time.sleep(0.5)
            d.save_screenshot(os.path.join(a.out, "file.png"))
            shown_tags = d.execute_script("return [...document.querySelectorAll('#tags li')].map(li => li.dataset.label)")
            check(shown_tags == tags, f"top tags {shown_tags} == classification endpoint {tags}")
            got = table_events(d)
            same = len(got) == len(want) and all(gl == wl and abs(gs - ws) <= 0.0051 and abs(ge - we) <= 0.0051
                                                 for (gl, gs, ge), (wl, ws, we) in zip(got, want))
            check(same, f"events on the page {got} == /v1/audio/events (to the 0.01 s shown)")
            drawn = d.execute_script("""
                const c = document.getElementById('plot'), g = c.getContext('2d');
                const px = g.getImageData(0, 0, c.width, c.height).data; let lit = 0;
                for (let i = 3; i < px.length; i += 4 * 97) if (px[i] > 0) lit++;
                return lit;""")
            check(drawn > 1000, f"the picture is drawn ({drawn} sampled pixels)")
        finally:
            d.quit()

        # 2. The fake microphone playing the same recording.
        d = browser(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={wav}%noloop"])
        try:
            d.get(base + "/")
            check(wait_state(d, {"ready"}, 20) == "ready", "the page loads (microphone)")
            set_options(d)
            d.find_element("id", "mic").click()
            state = wait_state(d, {"listening", "error"}, 20)
            check(state == "listening", f"the page listens (state {state})")
            t0 = time.time()
            shot = False
            while time.time() - t0 < a.seconds + 4:
                time.sleep(0.5)
                if not shot and time.time() - t0 > a.seconds * 0.75:
                    d.save_screenshot(os.path.join(a.out, "microphone-live.png"))
                    shot = True
            live_before_stop = table_events(d, final_only=False)
            d.find_element("id", "mic").click()
            state = wait_state(d, {"stopped", "error"}, 30)
            check(state == "stopped", f"the stream ends with done (state {state})")
            time.sleep(0.5)
            d.save_screenshot(os.path.join(a.out, "microphone.png"))
            got = table_events(d)
            print("live events: " + ", ".join(f"{l} {s:.2f}-{e:.2f}" for l, s, e in got), flush=True)
            check(len(live_before_stop) > 0, f"events appear while the recording plays ({len(live_before_stop)})")
            check([l for l, _, _ in got] == [l for l, _, _ in want], f"live labels {[l for l, _, _ in got]} == file labels {[l for l, _, _ in want]}")
            worst = max((max(abs(gs - ws), abs(ge - we)) for (_, gs, ge), (_, ws, we) in zip(got, want)), default=0)
            check(len(got) == len(want) and worst <= 1.0, f"live onsets and offsets within 1 s of the file's (worst {worst:.2f} s)")
        finally:
            d.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"browser_check: screenshots in {os.path.abspath(a.out)}")
    print("browser_check: " + ("passed" if not failures else f"FAILED ({len(failures)} checks)"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
