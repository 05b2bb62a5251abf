#!/usr/bin/env bash
# Throughput and latency of `ced serve` beside `ced tag --jobs 2` in the same run (issue 21):
#
#   1. `ced tag --jobs 2` on 10 s WAV clips: files/s (two runs of different sizes, so the
#      model loading cancels out), before and after the server runs;
#   2. `ced serve`, POST /v1/audio/classification of a 10 s WAV with wrk at concurrency 1, 8
#      and 64: requests/s, p50/p99 latency; at 8 also without dynamic batching (--max-batch 1);
#   3. RSS and open descriptors of the server after warm-up and after 10,000 more requests
#      (classification, events, embeddings and bad requests mixed).
#
#   swift build -c release && scripts/serve_bench.sh [--model DIR] [--seconds 20] [--requests 10000]
#
# Needs wrk (apt-get install wrk). Prints a table; timings on a shared machine drift, which is
# why the tool and the server take turns.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${CED_SHARED_DIR:-../shared}"
MODEL="$SHARED/reference/models/tiny"
SECONDS_PER_RUN=20
REQUESTS=10000
CED=".build/release/ced"
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
        --requests) REQUESTS="$2"; shift 2 ;;
        --ced) CED="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "serve_bench: needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$CED" ] || { echo "serve_bench: build first: swift build -c release" >&2; exit 1; }
W="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

echo "serve_bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), model $MODEL, fp32"
echo "  kernels: $(grep -m1 -o 'avx512_bf16\|amx_tile\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"

# A 10 s clip (16 kHz, 16-bit: tones over noise), and 72 copies for the tool.
python3 - "$W/clip.wav" <<'PY'
import math, random, struct, sys, wave
rng = random.Random(21)
sr = 16000
x = [0.3 * math.sin(2 * math.pi * (440 + 200 * (i // 8000 % 5)) * i / sr) * (0.5 + 0.5 * math.sin(i / 4000)) + rng.gauss(0, 0.05) for i in range(10 * sr)]
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr)
    w.writeframes(b"".join(struct.pack("<h", max(-32768, min(32767, int(v * 32767)))) for v in x))
PY
mkdir -p "$W/small" "$W/large"
for i in $(seq 1 8); do cp "$W/clip.wav" "$W/small/c$i.wav"; done
for i in $(seq 1 72); do cp "$W/clip.wav" "$W/large/c$i.wav"; done

tool_rate() {  # → "files/s cpu-ms-per-file" (two runs of 8 and 72 files: loading cancels out)
    python3 - "$CED" "$MODEL" "$W" <<'PY'
import resource, subprocess, sys, time
ced, model, w = sys.argv[1:4]
def run(d):
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    subprocess.run([ced, "tag", "--model", model, "--jobs", "2", "--quiet", "--format", "json", f"{w}/{d}"], check=True, stdout=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
(ws, cs), (wl, cl) = run("small"), run("large")
print("%.2f %.1f" % (64 / (wl - ws), 1000 * (cl - cs) / 64))
PY
}

cpu_seconds() { awk '{ printf "%.3f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

start_server() {
    "$CED" serve --model "$MODEL" --port 0 --quiet --max-concurrency 128 "$@" 2> "$W/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        PORT=$(grep -so 'http://127.0.0.1:[0-9]*' "$W/server.log" | head -1 | cut -d: -f3 || true)
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    [ -n "$PORT" ] || { cat "$W/server.log"; exit 1; }
    URL="http://127.0.0.1:$PORT/v1/audio/classification"
}
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }

cat > "$W/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "audio/wav"
local f = io.open(os.getenv("CLIP"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

run_wrk() {  # concurrency → "req/s p50 p99 errors server-cpu-ms-per-request"
    local c=$1 threads=$(( $1 < 2 ? 1 : 2 )) c0 c1
    c0=$(cpu_seconds "$SERVER_PID")
    CLIP="$W/clip.wav" wrk -t"$threads" -c"$c" -d"${SECONDS_PER_RUN}s" --timeout 60s -s "$W/post.lua" "$URL" > "$W/wrk.out" 2>&1
    c1=$(cpu_seconds "$SERVER_PID")
    awk -v cpu="$(python3 -c "print($c1 - $c0)")" '/^RESULT/ { printf "%.2f %.1f %.1f %d %.1f\n", $2 / ($3 / 1e6), $4, $5, $7, 1000 * cpu / $2 }' "$W/wrk.out"
}

# Rounds: the tool, the server (batched) at 1, 8 and 64, the server without batching at 8,
# the tool again; each figure is the best of its rounds (the machine is shared).
ROUNDS=${ROUNDS:-2}
declare -A BEST
best() {  # key value (higher is better for rates; lower for latencies and CPU)
    local k=$1 v=$2 dir=$3
    if [ -z "${BEST[$k]:-}" ] || python3 -c "import sys; sys.exit(0 if ($v $dir ${BEST[$k]}) else 1)"; then BEST[$k]=$v; fi
}
for round in $(seq 1 "$ROUNDS"); do
    read -r TR TC <<< "$(tool_rate)"; best tool_rate "$TR" ">"; best tool_cpu "$TC" "<"
    echo "round $round: ced tag --jobs 2 $TR files/s, $TC CPU ms per file"
    for mode in batched unbatched; do
        if [ "$mode" = batched ]; then start_server; else start_server --max-batch 1; fi
        CLIP="$W/clip.wav" wrk -t1 -c2 -d3s -s "$W/post.lua" "$URL" >/dev/null 2>&1
        for c in $([ "$mode" = batched ] && echo "1 8 64" || echo "8"); do
            read -r R P50 P99 E CPU <<< "$(run_wrk "$c")"
            echo "round $round: $mode concurrency $c: $R req/s, p50 $P50 ms, p99 $P99 ms, $E errors, $CPU CPU ms per request"
            best "$mode$c.rate" "$R" ">"; best "$mode$c.p50" "$P50" "<"; best "$mode$c.p99" "$P99" "<"; best "$mode$c.cpu" "$CPU" "<"
            ERRORS=$(( ${ERRORS:-0} + E ))
        done
        [ "$mode" = batched ] && BATCH=$(curl -s --noproxy '*' "http://127.0.0.1:$PORT/metrics" | awk '/^ced_model_batch_size_(sum|count)/ { v[$1 ~ /sum/ ? "s" : "c"] = $2 } END { printf "%.2f", v["s"] / v["c"] }')
        stop_server
    done
done
read -r TR TC <<< "$(tool_rate)"; best tool_rate "$TR" ">"; best tool_cpu "$TC" "<"
echo "last: ced tag --jobs 2 $TR files/s, $TC CPU ms per file"

TOOL=${BEST[tool_rate]}
SINGLE=${BEST[batched1.p50]}
echo
echo "| run | requests/s | × ced tag --jobs 2 ($TOOL files/s) | CPU ms per clip (ced tag: ${BEST[tool_cpu]}) | p50 ms | p99 ms | p99 / single request (${SINGLE} ms) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
row() { python3 -c "print('| $1 | %.2f | %.2f× | %.1f | %.1f | %.1f | %.2f× |' % (${BEST[$2.rate]}, ${BEST[$2.rate]} / $TOOL, ${BEST[$2.cpu]}, ${BEST[$2.p50]}, ${BEST[$2.p99]}, ${BEST[$2.p99]} / $SINGLE))"; }
row "concurrency 1" batched1
row "concurrency 8" batched8
row "concurrency 64" batched64
row "concurrency 8, --max-batch 1 (no batching)" unbatched8
echo "mean batch size (last batched server): $BATCH clips per model call; failed requests: ${ERRORS:-0}"

# Memory and descriptors over many requests.
start_server
python3 scripts/serve_load.py --url "http://127.0.0.1:$PORT" --clip "$W/clip.wav" --pid "$SERVER_PID" --requests "$REQUESTS" --concurrency 8
stop_server
