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
for i in $(seq 1 8); do ln -s "$W/clip.wav" "$W/small/c$i.wav"; done
for i in $(seq 1 72); do ln -s "$W/clip.wav" "$W/large/c$i.wav"; done

tool_rate() {
    local t0 t1 t2
    t0=$(date +%s.%N); "$CED" tag --model "$MODEL" --jobs 2 --quiet --format json "$W/small" >/dev/null
    t1=$(date +%s.%N); "$CED" tag --model "$MODEL" --jobs 2 --quiet --format json "$W/large" >/dev/null
    t2=$(date +%s.%N)
    python3 -c "print('%.2f' % (64 / (($t2 - $t1) - ($t1 - $t0))))"
}

start_server() {
    "$CED" serve --model "$MODEL" --port 0 --quiet --max-concurrency 128 "$@" 2> "$W/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$W/server.log" | head -1 | cut -d: -f3 || true)
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

run_wrk() {  # concurrency → "req/s p50 p99 errors"
    local c=$1 threads=$(( $1 < 2 ? 1 : 2 ))
    CLIP="$W/clip.wav" wrk -t"$threads" -c"$c" -d"${SECONDS_PER_RUN}s" --timeout 60s -s "$W/post.lua" "$URL" > "$W/wrk.out" 2>&1
    awk '/^RESULT/ { printf "%.2f %.1f %.1f %d\n", $2 / ($3 / 1e6), $4, $5, $7 }' "$W/wrk.out"
}

echo
echo "ced tag --jobs 2: $(tool_rate) files/s"
TOOL1=$(tool_rate)
echo "ced tag --jobs 2 (again): $TOOL1 files/s"

start_server
# Warm-up.
CLIP="$W/clip.wav" wrk -t1 -c2 -d3s -s "$W/post.lua" "$URL" >/dev/null 2>&1
read -r R1 P50_1 P99_1 E1 <<< "$(run_wrk 1)"
read -r R8 P50_8 P99_8 E8 <<< "$(run_wrk 8)"
read -r R64 P50_64 P99_64 E64 <<< "$(run_wrk 64)"
BATCH=$(curl -s --noproxy '*' "http://127.0.0.1:$PORT/metrics" | awk '/^ced_model_batch_size_(sum|count)/ { v[$1 ~ /sum/ ? "s" : "c"] = $2 } END { printf "%.2f", v["s"] / v["c"] }')
stop_server
start_server --max-batch 1
CLIP="$W/clip.wav" wrk -t1 -c2 -d3s -s "$W/post.lua" "$URL" >/dev/null 2>&1
read -r RNB P50_NB P99_NB ENB <<< "$(run_wrk 8)"
stop_server
TOOL2=$(tool_rate)
echo "ced tag --jobs 2 (after the server): $TOOL2 files/s"
TOOL=$(python3 -c "print('%.2f' % ((${TOOL1} + ${TOOL2}) / 2))")

echo
echo "| run | requests/s | × ced tag --jobs 2 ($TOOL files/s) | p50 ms | p99 ms | p99 / single request | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
row() { python3 -c "print('| $1 | %.2f | %.2f× | %.1f | %.1f | %.2f× | $6 |' % ($2, $2 / $TOOL, $3, $4, $4 / $P50_1))"; }
row "concurrency 1" "$R1" "$P50_1" "$P99_1" x "$E1"
row "concurrency 8" "$R8" "$P50_8" "$P99_8" x "$E8"
row "concurrency 64" "$R64" "$P50_64" "$P99_64" x "$E64"
row "concurrency 8, --max-batch 1 (no batching)" "$RNB" "$P50_NB" "$P99_NB" x "$ENB"
echo "mean batch size over the batched runs: $BATCH clips per model call"

# Memory and descriptors over many requests.
start_server
python3 scripts/serve_load.py --url "http://127.0.0.1:$PORT" --clip "$W/clip.wav" --pid "$SERVER_PID" --requests "$REQUESTS" --concurrency 8
stop_server
