#!/usr/bin/env bash
# Guest instructions per CED-Tiny clip of `ced tag` under qemu-aarch64, for each fp32 kernel
# path, counted by scripts/arm64/insn_count_plugin.c: (count for 3 copies of the clip −
# count for 1) / 2, so start-up and model loading cancel out; decode, resampling, mel and
# the model are in. Needs the arm64 build of scripts/check_arm64.sh --full.
#
# The kernel part alone, without the Swift build: scripts/arm64/tiny_clip_kernels.c (see the
# README's Platforms section for how it is built and run).
#
# Usage: scripts/arm64/insn_per_clip.sh [ROOT] [CLIP]   (ROOT: the arm64 root, default
# $CED_ARM64_ROOT or ~/.cache/ced-arm64/root; CLIP: a 10 s clip, default the reference's
# ukulele_speech_32k_mono_s16.wav)
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-${CED_ARM64_ROOT:-$HOME/.cache/ced-arm64/root}}
clip=${2:-$R/root/shared/reference/audio/ukulele_speech_32k_mono_s16.wav}
ced=$R/root/ced/.build/release/ced
model=$R/root/shared/reference/models/tiny
[ -x "$ced" ] || { echo "no arm64 build at $ced (run scripts/check_arm64.sh --full)" >&2; exit 1; }
work=$(mktemp -d /tmp/ced-insn.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -shared -fPIC -o "$work/insn.so" scripts/arm64/insn_count_plugin.c
for i in 1 2 3; do cp "$clip" "$work/clip$i.wav"; done
count() {   # kernel, files...
    local kernel=$1; shift
    CED_GEMM_KERNEL=$kernel qemu-aarch64 -L "$R" -cpu max -plugin "$work/insn.so" -d plugin \
        "$ced" tag --model "$model" --jobs 1 --format json "$@" 2>&1 >/dev/null | sed -n 's/^instructions: //p'
}
printf "%-10s %18s %18s %18s\n" kernel "1 clip" "3 clips" "per clip"
declare -A per
for kernel in ${KERNELS:-portable neon}; do
    one=$(count "$kernel" "$work/clip1.wav")
    three=$(count "$kernel" "$work/clip1.wav" "$work/clip2.wav" "$work/clip3.wav")
    per[$kernel]=$(( (three - one) / 2 ))
    printf "%-10s %18d %18d %18d\n" "$kernel" "$one" "$three" "${per[$kernel]}"
done
if [ -n "${per[portable]:-}" ] && [ -n "${per[neon]:-}" ]; then
    python3 -c "print('neon / portable per clip: %.4f (1/%.1f)' % (${per[neon]} / ${per[portable]}, ${per[portable]} / ${per[neon]}))"
fi
