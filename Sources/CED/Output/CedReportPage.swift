import Foundation

/// The picture of what CED heard, as one self-contained HTML page (no external resources,
/// works offline): the log-mel spectrogram, under it the score curves of the top classes
/// over time, the events as labelled bars on the same time axis, and the clip's top tags.
///
/// The drawing code is written once: `document(_:)` embeds `CedReport`s (`ced tag --events
/// --report`, a file to open from disk), `live(model:)` is the page a server serves at `/`,
/// which draws the same picture for a dropped file (`POST /v1/audio/report`) and, scrolling,
/// for the microphone (`/v1/audio/stream`).
public enum CedReportPage {
    /// A page showing `reports` (several: a list to switch between them).
    public static func document(_ reports: [CedReport], title: String = "CED report") throws -> String {
        let data = try "[" + reports.map { try CedJSONText.encode($0) }.joined(separator: ",\n") + "]"
        return page(title: title, config: #"{"mode": "report"}"#, data: data)
    }

    /// The server's page: drop a file or listen to the microphone. `model` names the
    /// served model; the page talks to the server it was loaded from.
    public static func live(model: String) -> String {
        page(title: "CED — \(model)", config: "{\"mode\": \"server\", \"model\": " + CedJSONText.quoted(model) + "}", data: "[]")
    }

    /// JSON placed inside a `<script>` element: `<` written as `\u003c` so that no text in
    /// it can close the element.
    private static func scriptSafe(_ json: String) -> String { json.replacingOccurrences(of: "<", with: "\\u003c") }

    private static func htmlEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    private static func page(title: String, config: String, data: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <link rel="icon" href="data:,">
        <title>\(htmlEscaped(title))</title>
        <style>\(style)</style>
        </head>
        <body data-state="loading">
        \(body)
        <script id="ced-config" type="application/json">\(scriptSafe(config))</script>
        <script id="ced-data" type="application/json">\(scriptSafe(data))</script>
        <script>\(script)</script>
        </body>
        </html>

        """
    }

    static let style = #"""
    :root { --bg: #fbfbfa; --fg: #1d1d1f; --muted: #6b6b70; --line: #e2e2e0; --panel: #ffffff; --accent: #2f6fdf; }
    @media (prefers-color-scheme: dark) {
      :root { --bg: #141416; --fg: #ececef; --muted: #9a9aa2; --line: #2c2c31; --panel: #1c1c20; --accent: #6f9cf0; }
    }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
    header { display: flex; align-items: baseline; gap: 1em; padding: 10px 20px; border-bottom: 1px solid var(--line); }
    header h1 { margin: 0; font-size: 18px; }
    header .model { color: var(--muted); }
    main { padding: 12px 20px 30px; max-width: 1600px; }
    #controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin-bottom: 12px; }
    #drop { flex: 1 1 320px; border: 2px dashed var(--line); border-radius: 8px; padding: 14px; text-align: center; color: var(--muted); }
    #drop.over { border-color: var(--accent); color: var(--fg); }
    button { font: inherit; padding: 7px 14px; border-radius: 6px; border: 1px solid var(--line); background: var(--panel); color: var(--fg); cursor: pointer; }
    button.on { background: #c62828; color: #fff; border-color: #c62828; }
    #options { display: flex; flex-wrap: wrap; gap: 10px; color: var(--muted); }
    #options label { display: flex; gap: 4px; align-items: center; }
    #options input { width: 4.5em; font: inherit; }
    #status { color: var(--muted); min-height: 1.4em; }
    #status.error { color: #c62828; }
    #files { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 10px; }
    #files button.current { border-color: var(--accent); }
    h2 { font-size: 16px; margin: 6px 0 2px; word-break: break-all; }
    #summary { color: var(--muted); margin-bottom: 8px; }
    #figure { position: relative; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 6px 0; user-select: none; }
    #figure canvas { display: block; width: 100%; }
    #cursor { position: absolute; top: 0; bottom: 0; width: 1px; background: var(--fg); opacity: .45; pointer-events: none; display: none; }
    #tip { position: absolute; pointer-events: none; background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 4px 8px; font-size: 12px; display: none; white-space: nowrap; z-index: 2; }
    #legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 8px 0 14px; }
    #legend span::before { content: ""; display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; background: var(--c); }
    .cols { display: flex; flex-wrap: wrap; gap: 24px; }
    .cols section { flex: 1 1 340px; }
    h3 { font-size: 14px; margin: 4px 0 6px; }
    #tags { list-style: none; margin: 0; padding: 0; }
    #tags li { display: grid; grid-template-columns: minmax(8em, 16em) 1fr 4.5em; gap: 8px; align-items: center; padding: 2px 0; }
    #tags .bar { height: 8px; background: var(--accent); border-radius: 4px; }
    #tags .score, td.num { font-variant-numeric: tabular-nums; text-align: right; }
    table { border-collapse: collapse; width: 100%; }
    th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); }
    th { color: var(--muted); font-weight: normal; }
    tr.ongoing td { font-style: italic; color: var(--muted); }
    .hint { color: var(--muted); font-size: 12px; }
    """#

    static let body = #"""
    <header><h1>CED</h1><span class="model" id="model"></span></header>
    <main>
    <div id="controls" hidden>
      <div id="drop">Drop an audio file here, or <label><u>choose one</u><input type="file" id="file" accept="audio/*,video/*" hidden></label></div>
      <button id="mic" type="button">Listen to the microphone</button>
      <div id="options">
        <label>window <input id="opt-window" type="number" step="0.1" min="0.2" value="2"> s</label>
        <label>hop <input id="opt-hop" type="number" step="0.05" min="0.05" value="0.5"> s</label>
        <label>threshold <input id="opt-threshold" type="number" step="0.05" min="0" max="1" value="0.5"></label>
        <label>merge gap <input id="opt-merge-gap" type="number" step="0.1" min="0" value="0.5"> s</label>
        <label>min duration <input id="opt-min-duration" type="number" step="0.1" min="0" value="0"> s</label>
      </div>
    </div>
    <div id="status" role="status"></div>
    <nav id="files"></nav>
    <section id="view" hidden>
      <h2 id="title"></h2>
      <div id="summary"></div>
      <div id="figure"><canvas id="plot"></canvas><div id="cursor"></div><div id="tip"></div></div>
      <div id="legend"></div>
      <div class="hint" id="hint">Scroll to zoom, drag to pan, double-click to see everything.</div>
      <div class="cols">
        <section><h3>Top tags</h3><ol id="tags"></ol></section>
        <section><h3>Events</h3><table id="events"><thead><tr><th>label</th><th>start</th><th>end</th><th>score</th><th>mean</th></tr></thead><tbody></tbody></table></section>
      </div>
    </section>
    </main>
    """#

    /// The drawing code (plain JavaScript, no libraries).
    static let script = #"""
    "use strict";
    (function () {
    const config = JSON.parse(document.getElementById("ced-config").textContent);
    const reports = JSON.parse(document.getElementById("ced-data").textContent);
    const $ = (id) => document.getElementById(id);
    const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6", "#d37295", "#8cd17d"];
    const MEL_H = 170, CURVE_H = 150, LANE_H = 20, AXIS_H = 24, LEFT = 64, RIGHT = 12, GAP = 8;

    // Colour map for the spectrogram (dark blue → purple → orange → pale yellow).
    const LUT = (function () {
      const stops = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]];
      const lut = new Uint8ClampedArray(256 * 3);
      for (let i = 0; i < 256; i++) {
        const x = i / 255 * (stops.length - 1), k = Math.min(stops.length - 2, Math.floor(x)), f = x - k;
        for (let c = 0; c < 3; c++) lut[3 * i + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f;
      }
      return lut;
    })();

    function fmtTime(t, step) {
      const neg = t < 0; t = Math.abs(t);
      const m = Math.floor(t / 60), s = t - 60 * m;
      const digits = step < 1 ? (step < 0.1 ? 2 : 1) : 0;
      let ss = s.toFixed(digits); if (s < 10) ss = "0" + ss;
      return (neg ? "-" : "") + (m > 0 || t >= 60 ? m + ":" + ss : s.toFixed(digits) + " s");
    }
    function niceStep(span, px) {
      const target = span / Math.max(1, px / 90);
      const steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
      for (const s of steps) if (s >= target) return s;
      return 7200;
    }
    function decodeBase64(s) {
      const bin = atob(s), out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }
    function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

    // ---------------------------------------------------------------------------------
    // The picture: a scene (spectrogram, curves, events, tags) drawn over [t0, t1].

    const plot = $("plot"), figure = $("figure");
    let scene = null;          // what is shown
    let view = { t0: 0, t1: 10, follow: false };

    function colourOf(scene, index) {
      if (!scene.colours.has(index)) scene.colours.set(index, PALETTE[scene.colours.size % PALETTE.length]);
      return scene.colours.get(index);
    }

    // A scene from a report (the server's JSON or the embedded data).
    function sceneFromReport(r) {
      const s = { file: r.file, model: r.model, duration: r.duration_s, tags: r.labels, events: r.events.map((e) => Object.assign({ ongoing: false }, e)),
                  colours: new Map(), curves: [], mel: null, live: false };
      const c = r.curves;
      for (const k of c.classes) {
        colourOf(s, k.index);
        s.curves.push({ index: k.index, label: k.label, threshold: k.threshold, release: k.release,
                        t: c.start.map((a, i) => (a + c.end[i]) / 2), v: k.scores });
      }
      for (const e of s.events) colourOf(s, e.index);
      const m = r.mel;
      s.mel = { bins: m.bins, columns: m.columns, secondsPerColumn: m.frame_seconds * m.frames_per_column, t0: 0,
                fMin: m.f_min, fMax: m.f_max, bytes: decodeBase64(m.data), image: null };
      return s;
    }

    // The spectrogram as an image (one pixel per column and bin), rebuilt when it changes.
    function melImage(mel) {
      if (mel.image && mel.imageColumns === mel.columns) return mel.image;
      const cv = mel.image || document.createElement("canvas");
      cv.width = Math.max(1, mel.columns); cv.height = mel.bins;
      const g = cv.getContext("2d"), img = g.createImageData(cv.width, cv.height);
      for (let b = 0; b < mel.bins; b++) {
        const y = mel.bins - 1 - b;
        for (let c = 0; c < mel.columns; c++) {
          const v = mel.bytes[b * mel.columns + c];
          const o = 4 * (y * cv.width + c);
          img.data[o] = LUT[3 * v]; img.data[o + 1] = LUT[3 * v + 1]; img.data[o + 2] = LUT[3 * v + 2]; img.data[o + 3] = 255;
        }
      }
      g.putImageData(img, 0, 0);
      mel.image = cv; mel.imageColumns = mel.columns;
      return cv;
    }

    function lanesOf(scene) {
      const order = [];
      for (const e of scene.events) if (!order.includes(e.index)) order.push(e.index);
      return order;
    }

    function draw() {
      if (!scene) return;
      const lanes = lanesOf(scene);
      const dpr = window.devicePixelRatio || 1;
      const W = Math.max(320, figure.clientWidth);
      const eventsH = Math.max(1, lanes.length) * LANE_H;
      const H = MEL_H + GAP + CURVE_H + GAP + eventsH + AXIS_H;
      plot.style.height = H + "px";
      if (plot.width !== Math.round(W * dpr) || plot.height !== Math.round(H * dpr)) { plot.width = Math.round(W * dpr); plot.height = Math.round(H * dpr); }
      const g = plot.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, W, H);
      const style = getComputedStyle(document.body);
      const fg = style.getPropertyValue("--fg").trim() || "#000", muted = style.getPropertyValue("--muted").trim() || "#777", line = style.getPropertyValue("--line").trim() || "#ddd";
      const pw = W - LEFT - RIGHT, t0 = view.t0, t1 = Math.max(view.t0 + 1e-3, view.t1);
      const X = (t) => LEFT + (t - t0) / (t1 - t0) * pw;
      g.font = "11px system-ui, sans-serif";

      // Spectrogram.
      let y = 0;
      const mel = scene.mel;
      if (mel && mel.columns > 0) {
        const img = melImage(mel);
        const spc = mel.secondsPerColumn, first = mel.t0;
        const c0 = Math.max(0, (t0 - first) / spc), c1 = Math.min(mel.columns, (t1 - first) / spc);
        if (c1 > c0) {
          g.imageSmoothingEnabled = (c1 - c0) > pw;
          g.drawImage(img, c0, 0, c1 - c0, mel.bins, X(first + c0 * spc), y, (c1 - c0) * spc / (t1 - t0) * pw, MEL_H);
        }
        g.fillStyle = muted; g.textAlign = "right"; g.textBaseline = "middle";
        const nyq = mel.fMax, mels = (f) => 2595 * Math.log10(1 + f / 700), lo = mels(mel.fMin), hi = mels(nyq);
        for (const f of [500, 1000, 2000, 4000, 8000, 16000]) {
          if (f > nyq) break;
          const yy = Math.max(y + 6, y + MEL_H * (1 - (mels(f) - lo) / (hi - lo)));
          g.fillText(f >= 1000 ? f / 1000 + " kHz" : f + " Hz", LEFT - 6, yy);
          g.fillRect(LEFT - 4, yy, 3, 1);
        }
      }
      g.strokeStyle = line; g.strokeRect(LEFT + 0.5, y + 0.5, pw - 1, MEL_H - 1);
      y += MEL_H + GAP;

      // Score curves.
      g.strokeStyle = line; g.strokeRect(LEFT + 0.5, y + 0.5, pw - 1, CURVE_H - 1);
      g.fillStyle = muted; g.textAlign = "right"; g.textBaseline = "middle";
      for (const v of [0, 0.5, 1]) g.fillText(v.toFixed(1), LEFT - 6, y + CURVE_H - v * (CURVE_H - 4) - 2);
      const Y = (v) => y + CURVE_H - Math.max(0, Math.min(1, v)) * (CURVE_H - 4) - 2;
      const thresholds = new Set(scene.curves.filter((c) => c.threshold != null).map((c) => c.threshold));
      if (thresholds.size === 1 || scene.threshold != null) {
        const th = scene.threshold != null ? scene.threshold : [...thresholds][0];
        g.save(); g.setLineDash([4, 4]); g.strokeStyle = muted; g.beginPath(); g.moveTo(LEFT, Y(th)); g.lineTo(LEFT + pw, Y(th)); g.stroke(); g.restore();
        g.textAlign = "left"; g.fillText("threshold " + th, LEFT + 4, Y(th) - 7);
      }
      g.save(); g.beginPath(); g.rect(LEFT, y, pw, CURVE_H); g.clip();
      for (const c of scene.curves) {
        g.strokeStyle = colourOf(scene, c.index); g.lineWidth = 1.6; g.beginPath();
        let open = false, prevT = -Infinity;
        const gapLimit = scene.live ? 3 * (scene.hop || 0.5) : Infinity;
        for (let i = 0; i < c.t.length; i++) {
          const t = c.t[i];
          if (t < t0 - 60 || t > t1 + 60) { open = false; continue; }
          if (c.v[i] == null || t - prevT > gapLimit) open = false;
          if (c.v[i] == null) { prevT = t; continue; }
          if (open) g.lineTo(X(t), Y(c.v[i])); else { g.moveTo(X(t), Y(c.v[i])); open = true; }
          prevT = t;
        }
        g.stroke();
      }
      g.restore();
      y += CURVE_H + GAP;

      // Events, one lane per class.
      g.save(); g.beginPath(); g.rect(LEFT, y, pw, eventsH); g.clip();
      g.textBaseline = "middle";
      lanes.forEach((index, lane) => {
        const ly = y + lane * LANE_H;
        g.fillStyle = line; g.fillRect(LEFT, ly + LANE_H - 1, pw, 1);
        for (const e of scene.events) {
          if (e.index !== index || e.end < t0 || e.start > t1) continue;
          const x0 = X(e.start), x1 = Math.max(x0 + 2, X(e.end));
          g.globalAlpha = e.ongoing ? 0.5 : 0.9; g.fillStyle = colourOf(scene, index);
          g.fillRect(x0, ly + 2, x1 - x0, LANE_H - 5);
          g.globalAlpha = 1;
          const text = e.label, tw = g.measureText(text).width;
          g.fillStyle = tw + 8 < x1 - x0 ? "#fff" : fg; g.textAlign = "left";
          g.fillText(text, tw + 8 < x1 - x0 ? x0 + 4 : x1 + 4, ly + LANE_H / 2 - 1);
        }
      });
      g.restore();
      if (!lanes.length) { g.fillStyle = muted; g.textAlign = "left"; g.textBaseline = "middle"; g.fillText("no events", LEFT + 4, y + LANE_H / 2); }
      g.fillStyle = muted; g.textAlign = "right"; g.textBaseline = "middle"; g.fillText("events", LEFT - 6, y + LANE_H / 2);
      y += eventsH;

      // Time axis.
      const step = niceStep(t1 - t0, pw);
      g.fillStyle = muted; g.textAlign = "center"; g.textBaseline = "top";
      for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
        const x = X(t);
        g.fillRect(x, y, 1, 4);
        g.fillText(fmtTime(Math.round(t / step) * step, step), x, y + 6);
      }
    }

    function showLegend() {
      $("legend").innerHTML = scene.curves.map((c) => '<span style="--c:' + colourOf(scene, c.index) + '">' + esc(c.label) + "</span>").join("");
    }
    function showTags() {
      const tags = scene.tags || [];
      $("tags").innerHTML = tags.map((p) => '<li data-label="' + esc(p.label) + '"><span>' + esc(p.label) + '</span><span><div class="bar" style="width:' +
        (Math.max(0, Math.min(1, p.score)) * 100).toFixed(1) + '%"></div></span><span class="score">' + p.score.toFixed(3) + "</span></li>").join("");
    }
    function showEvents() {
      const rows = scene.events.slice().sort((a, b) => a.start - b.start || a.index - b.index);
      $("events").tBodies[0].innerHTML = rows.map((e) => '<tr class="' + (e.ongoing ? "ongoing" : "final") + '" data-label="' + esc(e.label) + '"><td>' + esc(e.label) +
        '</td><td class="num">' + e.start.toFixed(2) + '</td><td class="num">' + e.end.toFixed(2) + (e.ongoing ? "…" : "") +
        '</td><td class="num">' + e.score.toFixed(3) + '</td><td class="num">' + e.mean_score.toFixed(3) + "</td></tr>").join("");
    }
    function showSummary() {
      $("title").textContent = scene.file;
      const finals = scene.events.filter((e) => !e.ongoing).length;
      $("summary").textContent = (scene.live ? "live, " : "") + scene.duration.toFixed(1) + " s · model " + scene.model + " · " + finals + " event" + (finals === 1 ? "" : "s");
    }
    function show(s) {
      scene = s;
      $("view").hidden = false;
      $("hint").hidden = s.live;
      if (!s.live) view = { t0: 0, t1: Math.max(s.duration, 0.5), follow: false };
      showLegend(); showTags(); showEvents(); showSummary(); draw();
    }

    // Zoom (wheel), pan (drag), reset (double-click), and a cursor with the scores under it.
    plot.addEventListener("wheel", (ev) => {
      if (!scene || scene.live) return;
      ev.preventDefault();
      const r = plot.getBoundingClientRect(), pw = r.width - LEFT - RIGHT;
      const f = Math.max(0, Math.min(1, (ev.clientX - r.left - LEFT) / pw)), t = view.t0 + f * (view.t1 - view.t0);
      const span = Math.min(Math.max(scene.duration, 0.5), Math.max(0.2, (view.t1 - view.t0) * Math.exp(ev.deltaY * 0.002)));
      view.t0 = Math.max(0, Math.min(t - f * span, Math.max(scene.duration, 0.5) - span)); view.t1 = view.t0 + span;
      draw();
    }, { passive: false });
    let dragging = null;
    plot.addEventListener("mousedown", (ev) => { if (scene && !scene.live) dragging = { x: ev.clientX, t0: view.t0, t1: view.t1 }; });
    window.addEventListener("mouseup", () => { dragging = null; });
    plot.addEventListener("dblclick", () => { if (scene && !scene.live) { view = { t0: 0, t1: Math.max(scene.duration, 0.5) }; draw(); } });
    plot.addEventListener("mousemove", (ev) => {
      if (!scene) return;
      const r = plot.getBoundingClientRect(), pw = r.width - LEFT - RIGHT;
      if (dragging) {
        const dt = (ev.clientX - dragging.x) / pw * (dragging.t1 - dragging.t0), span = dragging.t1 - dragging.t0;
        view.t0 = Math.max(0, Math.min(dragging.t0 - dt, Math.max(scene.duration, 0.5) - span)); view.t1 = view.t0 + span;
        draw();
      }
      const x = ev.clientX - r.left;
      if (x < LEFT || x > r.width - RIGHT) { $("cursor").style.display = "none"; $("tip").style.display = "none"; return; }
      const t = view.t0 + (x - LEFT) / pw * (view.t1 - view.t0);
      const lines = ["<b>" + fmtTime(t, 0.01) + "</b>"];
      for (const c of scene.curves) {
        let best = -1, bd = Infinity;
        for (let i = 0; i < c.t.length; i++) { const d = Math.abs(c.t[i] - t); if (d < bd && c.v[i] != null) { bd = d; best = i; } }
        if (best >= 0 && bd <= (scene.hop || 1) * 2 + 1) lines.push('<span style="color:' + colourOf(scene, c.index) + '">■</span> ' + esc(c.label) + " " + c.v[best].toFixed(3));
      }
      const cur = $("cursor"), tip = $("tip");
      cur.style.display = "block"; cur.style.left = x + "px";
      tip.innerHTML = lines.join("<br>"); tip.style.display = "block";
      tip.style.left = Math.min(x + 12, r.width - tip.offsetWidth - 4) + "px"; tip.style.top = "8px";
    });
    plot.addEventListener("mouseleave", () => { $("cursor").style.display = "none"; $("tip").style.display = "none"; });
    window.addEventListener("resize", draw);

    function status(text, error) {
      const s = $("status"); s.textContent = text || ""; s.className = error ? "error" : "";
    }

    // ---------------------------------------------------------------------------------
    // Report mode: the embedded reports, a button per file.

    if (config.mode === "report") {
      $("model").textContent = reports.length ? reports[0].model : "";
      if (reports.length > 1) {
        $("files").innerHTML = reports.map((r, i) => '<button type="button" data-i="' + i + '">' + esc(r.file) + "</button>").join("");
        $("files").addEventListener("click", (ev) => {
          const b = ev.target.closest("button"); if (!b) return;
          for (const x of $("files").children) x.classList.toggle("current", x === b);
          show(sceneFromReport(reports[+b.dataset.i]));
        });
        $("files").firstElementChild.classList.add("current");
      }
      if (reports.length) show(sceneFromReport(reports[0])); else status("No recordings in this report.");
      document.body.dataset.state = "shown";
      return;
    }

    // ---------------------------------------------------------------------------------
    // Server mode: a dropped file goes to POST /v1/audio/report; the microphone streams to
    // /v1/audio/stream over a WebSocket and the picture scrolls.

    $("model").textContent = config.model || "";
    $("controls").hidden = false;
    document.body.dataset.state = "ready";
    const num = (id) => { const v = parseFloat($(id).value); return isFinite(v) ? v : undefined; };
    function eventOptions() {
      const o = { window: num("opt-window"), hop: num("opt-hop"), threshold: num("opt-threshold"),
                  merge_gap: num("opt-merge-gap"), min_duration: num("opt-min-duration") };
      for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
      return o;
    }

    async function analyse(file) {
      stopMic();
      status("Analysing " + file.name + " …");
      document.body.dataset.state = "analysing";
      const form = new FormData();
      form.append("file", file, file.name);
      const o = eventOptions();
      for (const k of Object.keys(o)) form.append(k, String(o[k]));
      try {
        const res = await fetch("v1/audio/report", { method: "POST", body: form });
        const text = await res.text();
        let body; try { body = JSON.parse(text); } catch (e) { throw new Error(res.status + " " + text.slice(0, 200)); }
        if (!res.ok) throw new Error(body.error ? body.error.message : res.status + "");
        show(sceneFromReport(body));
        status("");
        document.body.dataset.state = "shown";
      } catch (e) {
        status(file.name + ": " + e.message, true);
        document.body.dataset.state = "error";
      }
    }
    const drop = $("drop");
    drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); if (ev.dataTransfer.files.length) analyse(ev.dataTransfer.files[0]); });
    $("file").addEventListener("change", () => { if ($("file").files.length) analyse($("file").files[0]); });

    // The microphone. Samples go to the server as float32 frames; the spectrogram is
    // computed here (the same 64-bin log-mel as the model's, at the device's rate).
    let mic = null;
    const SPAN = 30;          // seconds shown while listening

    function melFrontEnd(rate) {
      const win = Math.round(0.032 * rate), hop = Math.round(0.01 * rate);
      let n = 1; while (n < win) n <<= 1;
      const hann = new Float32Array(win);
      for (let i = 0; i < win; i++) hann[i] = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / win);
      const bins = 64, fMax = Math.min(8000, rate / 2), mel = (f) => 2595 * Math.log10(1 + f / 700), hz = (m) => 700 * (Math.pow(10, m / 2595) - 1);
      const pts = []; for (let i = 0; i < bins + 2; i++) pts.push(hz(mel(0) + (mel(fMax) - mel(0)) * i / (bins + 1)));
      const filters = [];
      for (let b = 0; b < bins; b++) {
        const w = new Float32Array(n / 2 + 1);
        for (let k = 0; k <= n / 2; k++) {
          const f = k * rate / n, l = pts[b], c = pts[b + 1], r = pts[b + 2];
          w[k] = Math.max(0, Math.min((f - l) / (c - l), (r - f) / (r - c)));
        }
        filters.push(w);
      }
      const re = new Float32Array(n), im = new Float32Array(n);
      function fft() {
        for (let i = 1, j = 0; i < n; i++) {
          let bit = n >> 1; for (; j & bit; bit >>= 1) j ^= bit; j ^= bit;
          if (i < j) { let t = re[i]; re[i] = re[j]; re[j] = t; t = im[i]; im[i] = im[j]; im[j] = t; }
        }
        for (let len = 2; len <= n; len <<= 1) {
          const a = -2 * Math.PI / len, wr = Math.cos(a), wi = Math.sin(a);
          for (let i = 0; i < n; i += len) {
            let cr = 1, ci = 0;
            for (let k = 0; k < len / 2; k++) {
              const p = i + k, q = p + len / 2, tr = re[q] * cr - im[q] * ci, ti = re[q] * ci + im[q] * cr;
              re[q] = re[p] - tr; im[q] = im[p] - ti; re[p] += tr; im[p] += ti;
              const nr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = nr;
            }
          }
        }
      }
      let buf = new Float32Array(0);
      return {
        hop, fMax,
        push(samples, out) {            // appends a column of dB values per hop to `out`
          const merged = new Float32Array(buf.length + samples.length); merged.set(buf); merged.set(samples, buf.length); buf = merged;
          let start = 0;
          while (start + win <= buf.length) {
            re.fill(0); im.fill(0);
            for (let i = 0; i < win; i++) re[i] = buf[start + i] * hann[i];
            fft();
            const col = new Float32Array(bins);
            for (let b = 0; b < bins; b++) {
              let s = 0; const w = filters[b];
              for (let k = 0; k <= n / 2; k++) if (w[k] > 0) s += w[k] * (re[k] * re[k] + im[k] * im[k]);
              col[b] = 10 * Math.log10(Math.max(s, 1e-10));
            }
            out.push(col);
            start += hop;
          }
          buf = buf.slice(start);
        }
      };
    }

    function liveScene(rate) {
      const s = { file: "microphone", model: config.model || "", duration: 0, tags: [], events: [], colours: new Map(), curves: [], live: true,
                  hop: 0.5, mel: { bins: 64, columns: 0, secondsPerColumn: 0.01, t0: 0, fMin: 0, fMax: Math.min(8000, rate / 2), bytes: null, image: null },
                  cols: [], colStart: 0, top: -Infinity, all: new Map() };
      return s;
    }

    // Keeps the last SPAN + 5 seconds of spectrogram columns as bytes (fixed 90 dB range under the loudest so far).
    function refreshLiveMel(s) {
      const keep = Math.ceil((SPAN + 5) / s.mel.secondsPerColumn);
      if (s.cols.length > keep) { const drop = s.cols.length - keep; s.cols.splice(0, drop); s.colStart += drop; }
      for (const c of s.cols) for (const v of c) if (v > s.top) s.top = v;
      const cols = s.cols.length, bytes = new Uint8Array(64 * cols), low = s.top - 90;
      for (let c = 0; c < cols; c++) for (let b = 0; b < 64; b++) bytes[b * cols + c] = Math.max(0, Math.min(255, Math.round((s.cols[c][b] - low) / 90 * 255)));
      s.mel.bytes = bytes; s.mel.columns = cols; s.mel.t0 = s.colStart * s.mel.secondsPerColumn; s.mel.image = null;
    }

    function onMessage(s, m) {
      if (m.type === "started") { s.hop = m.hop_s; s.threshold = m.threshold; return; }
      if (m.type === "window") {
        s.duration = Math.max(s.duration, m.end);
        const t = (m.start + m.end) / 2, keepFrom = s.duration - SPAN - 10;
        for (const p of m.labels) {
          let c = s.all.get(p.index);
          if (!c) { c = { index: p.index, label: p.label, t: [], v: [] }; s.all.set(p.index, c); }
          c.t.push(t); c.v.push(p.score);
        }
        // Only what can still be seen is kept (memory stays flat however long it listens).
        for (const [index, c] of s.all) {
          let k = 0; while (k < c.t.length && c.t[k] < keepFrom) k++;
          if (k) { c.t.splice(0, k); c.v.splice(0, k); }
          if (!c.t.length) s.all.delete(index);
        }
        // Curves: the classes with events in view, then the highest recent peaks, at most 8.
        const evs = new Set(s.events.filter((e) => e.end >= keepFrom).map((e) => e.index));
        const peak = (c) => Math.max(...c.v);
        s.curves = [...s.all.values()].sort((a, b) => (evs.has(b.index) - evs.has(a.index)) || (peak(b) - peak(a))).slice(0, 8);
        s.tags = m.labels.slice(0, 5);
        return "window";
      }
      if (m.type === "event") {
        const i = s.events.findIndex((e) => e.id === m.id);
        const e = Object.assign({}, m);
        if (i >= 0) s.events[i] = e; else s.events.push(e);
        colourOf(s, e.index);
        return "event";
      }
      if (m.type === "error") throw new Error(m.error ? m.error.message : "server error");
    }

    async function startMic() {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
      } catch (e) { status("Microphone not available: " + e.message, true); document.body.dataset.state = "error"; return; }
      const ctx = new AudioContext();
      const rate = ctx.sampleRate;
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + location.pathname.replace(/[^/]*$/, "") + "v1/audio/stream";
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      const s = liveScene(rate);
      const front = melFrontEnd(rate);
      mic = { ctx, stream, ws, s, node: null, stopping: false };
      show(s);
      view = { t0: 0, t1: SPAN, follow: true };
      $("mic").textContent = "Stop"; $("mic").classList.add("on");
      status("Connecting …");
      let pending = [], pendingLength = 0, redraw = false;
      ws.onopen = async () => {
        ws.send(JSON.stringify(Object.assign({ type: "start", sample_rate: rate, format: "f32le", channels: 1, ongoing: true, windows: true, top_k: 10 }, eventOptions())));
        const source = ctx.createMediaStreamSource(stream);
        const onSamples = (x) => {
          if (ws.readyState !== 1 || mic.stopping) return;
          pending.push(x); pendingLength += x.length;
          if (pendingLength >= rate / 20) {      // 50 ms per message
            const all = new Float32Array(pendingLength); let o = 0;
            for (const p of pending) { all.set(p, o); o += p.length; }
            pending = []; pendingLength = 0;
            ws.send(all.buffer);
            front.push(all, s.cols); redraw = true;
          }
        };
        try {
          const code = "registerProcessor('ced-tap', class extends AudioWorkletProcessor { process(i) { if (i[0] && i[0][0]) this.port.postMessage(i[0][0].slice(0)); return true; } });";
          await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([code], { type: "application/javascript" })));
          const node = new AudioWorkletNode(ctx, "ced-tap");
          node.port.onmessage = (ev) => onSamples(ev.data);
          source.connect(node); node.connect(ctx.destination);
          mic.node = node;
        } catch (e) {
          const node = ctx.createScriptProcessor(4096, 1, 1);
          node.onaudioprocess = (ev) => onSamples(new Float32Array(ev.inputBuffer.getChannelData(0)));
          source.connect(node); node.connect(ctx.destination);
          mic.node = node;
        }
        status("Listening (" + rate + " Hz) …");
        document.body.dataset.state = "listening";
      };
      ws.onmessage = (ev) => {
        let m; try { m = JSON.parse(ev.data); } catch (e) { return; }
        try {
          if (m.type === "done") { status("Stopped."); document.body.dataset.state = "stopped"; return; }
          if (onMessage(s, m)) redraw = true;
        } catch (e) { status(e.message, true); document.body.dataset.state = "error"; }
      };
      ws.onerror = () => { status("The connection to the server failed.", true); document.body.dataset.state = "error"; };
      ws.onclose = () => { if (mic && mic.ws === ws) finishMic(); };
      const tick = () => {
        if (!mic || mic.s !== s) return;
        if (redraw) {
          redraw = false;
          refreshLiveMel(s);
          const now = Math.max(s.duration, (s.colStart + s.cols.length) * s.mel.secondsPerColumn);
          view = { t0: Math.max(0, now - SPAN), t1: Math.max(SPAN, now), follow: true };
          showLegend(); showTags(); showEvents(); showSummary(); draw();
        }
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }
    function finishMic() {
      if (!mic) return;
      const m = mic; mic = null;
      try { m.node && m.node.disconnect(); } catch (e) {}
      m.stream.getTracks().forEach((t) => t.stop());
      m.ctx.close();
      $("mic").textContent = "Listen to the microphone"; $("mic").classList.remove("on");
      if (document.body.dataset.state === "listening") { document.body.dataset.state = "stopped"; status("Stopped."); }
      refreshLiveMel(m.s); showEvents(); showSummary(); draw();
    }
    function stopMic() {
      if (!mic) return;
      mic.stopping = true;
      if (mic.ws.readyState === 1) mic.ws.send(JSON.stringify({ type: "stop" })); else finishMic();
    }
    $("mic").addEventListener("click", () => { if (mic) stopMic(); else startMic(); });
    window.cedPage = { stopMic, analyse };
    })();
    """#
}
