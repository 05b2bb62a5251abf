#!/usr/bin/env bash
# arm64 (AArch64) checks on an x86-64 machine, under qemu user-mode emulation (issue 20).
#
#   scripts/check_arm64.sh          the C kernels (seconds; run by .ci/run):
#     - installs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user;
#     - cross-compiles Sources/CEDKernels with gcc (-O2 and -O0, the debug builds' level) and
#       with the Swift toolchain's clang (--target=aarch64-linux-gnu), warning-free (-Werror);
#     - links scripts/arm64/kernel_test.c (every NEON kernel against the portable reference:
#       random shapes with partial tiles, every epilogue, the dotprod/i8mm/bf16 paths) with
#       each, and runs it under qemu-aarch64 with -cpu max (every extension present), -cpu
#       cortex-a76 (dotprod only) and -cpu cortex-a53 (none: their paths must be switched off);
#     - prints the fp32 tile's inner-loop instruction mix (clang) and fails below 0.8 FMAs.
#
#   scripts/check_arm64.sh --full   the whole package in a Debian trixie arm64 root with
#     Debian's swiftlang (6.0.3), under qemu (slow: about 14 minutes to set up the root once,
#     then 30+ minutes for the release build, since the compiler itself is emulated): builds
#     it from a clone of HEAD, runs the golden and CLI tests, compares `ced tag` with the
#     reference and runs `ced bench --quick`. Needs root (debootstrap, chroot, mounts).
#     CED_ARM64_ROOT (default ~/.cache/ced-arm64/root) keeps the root between runs;
#     CED_ARM64_FILTER overrides the test filter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
K=Sources/CEDKernels

apt_install() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

swift_clang() {
    local swift
    swift=$(command -v swift || true)
    [ -n "$swift" ] && [ -x "$(dirname "$(readlink -f "$swift")")/clang" ] && echo "$(dirname "$(readlink -f "$swift")")/clang" && return
    command -v clang || true
}

kernels() {
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user
    out=$(mktemp -d /tmp/ced-arm64.XXXXXX)
    trap 'rm -rf "$out"' EXIT
    local clang
    clang=$(swift_clang)
    [ -n "$clang" ] || { echo "no clang found (the Swift toolchain's)" >&2; exit 1; }
    echo "== cross-compiling $K: aarch64-linux-gnu-gcc $(aarch64-linux-gnu-gcc -dumpversion), $("$clang" --version | head -1)"
    local configs=("gcc-O2" "gcc-O0" "clang-O2")
    for cfg in "${configs[@]}"; do
        mkdir -p "$out/$cfg"
        for f in "$K"/*.c; do
            local o="$out/$cfg/$(basename "$f" .c).o"
            case $cfg in
                gcc-O2) aarch64-linux-gnu-gcc -O2 -std=gnu11 -Wall -Wextra -Werror -I"$K/include" -c "$f" -o "$o" ;;
                gcc-O0) aarch64-linux-gnu-gcc -O0 -std=gnu11 -Wall -Werror -I"$K/include" -c "$f" -o "$o" ;;
                clang-O2) "$clang" --target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu -O2 -std=gnu11 -Wall -Wextra \
                              -Werror -I"$K/include" -c "$f" -o "$o" ;;
            esac
        done
        # clang cannot link against the cross sysroot by itself: gcc's driver links.
        aarch64-linux-gnu-gcc -O2 -std=gnu11 -Wall -Werror -I"$K/include" scripts/arm64/kernel_test.c "$out/$cfg"/*.o -lm \
            -o "$out/kernel_test-$cfg"
    done
    local failed=0
    for cfg in "${configs[@]}"; do
        for cpu in "max dotprod,i8mm,bf16" "cortex-a76 dotprod" "cortex-a53 none"; do
            set -- $cpu
            echo "== kernel_test ($cfg) under qemu-aarch64 -cpu $1"
            if ! qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$1" "$out/kernel_test-$cfg" "$2" | tail -n 2; then failed=1; fi
        done
    done
    echo "== inner loops (clang -O2, aarch64-linux-gnu-objdump -d)"
    aarch64-linux-gnu-objdump -d "$out/clang-O2"/neon_tile.o "$out/clang-O2"/neon_dot.o > "$out/dis.txt"
    python3 scripts/arm64/inner_loop_mix.py "$out/dis.txt" ced_tile_neon fmla | tee "$out/mix.txt"
    python3 scripts/arm64/inner_loop_mix.py "$out/dis.txt" ced_tile_q8_dotprod sdot
    python3 scripts/arm64/inner_loop_mix.py "$out/dis.txt" ced_tile_q8_i8mm usmmla
    python3 scripts/arm64/inner_loop_mix.py "$out/dis.txt" ced_tile_bf16_bfdot bfdot
    python3 scripts/arm64/inner_loop_mix.py "$out/dis.txt" ced_tile_bf16_bfmmla bfmmla
    local ratio
    ratio=$(sed -n 's/.* fmla (\([0-9.]*\)).*/\1/p' "$out/mix.txt")
    if ! python3 -c "import sys; sys.exit(0 if float('$ratio') >= 0.8 else 1)"; then
        echo "FAIL: the NEON fp32 tile's inner loop is $ratio FMAs (target: at least 0.8)"
        failed=1
    fi
    if [ $failed -ne 0 ]; then echo "check_arm64: FAILED"; exit 1; fi
    echo "check_arm64: kernels OK"
}

full() {
    local R=${CED_ARM64_ROOT:-$HOME/.cache/ced-arm64/root}
    local shared=${CED_SHARED_DIR:-$ROOT_DIR/../shared}
    [ -d "$shared/reference" ] || { echo "the reference fixtures ($shared) are needed" >&2; exit 1; }
    apt_install debootstrap qemu-user-static binfmt-support
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    mkdir -p "$(dirname "$R")"
    if [ ! -e "$R/.ced-debootstrap-done" ]; then
        echo "== debootstrap (arm64, trixie) into $R: about 7 minutes"
        debootstrap --arch=arm64 --foreign --variant=minbase trixie "$R" http://deb.debian.org/debian
        chroot "$R" /debootstrap/debootstrap --second-stage
        touch "$R/.ced-debootstrap-done"
    fi
    cp /etc/resolv.conf "$R/etc/"
    mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
    mountpoint -q "$R/sys" || { mount --rbind /sys "$R/sys" && mount --make-rslave "$R/sys"; }
    mountpoint -q "$R/dev" || { mount --rbind /dev "$R/dev" && mount --make-rslave "$R/dev"; }
    local CH=(chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    # swiftlang, and OpenBLAS so that the tests (CI=1) check the blas path on arm64 too.
    if ! "${CH[@]}" sh -c 'command -v swift && dpkg -s libopenblas0' >/dev/null 2>&1; then
        echo "== swiftlang into the root: about 8 minutes"
        "${CH[@]}" apt-get update -qq
        "${CH[@]}" apt-get install -y -qq --no-install-recommends swiftlang git ca-certificates libc6-dev libstdc++-14-dev \
            libopenblas0 >/dev/null
    fi
    "${CH[@]}" swift --version 2>&1 | head -1
    # The package (HEAD), the fixtures, and its one dependency from the host's SwiftPM cache
    # (a mirror set in the copy; Package.swift untouched).
    # A clone of HEAD; a clone left by an earlier run is moved to HEAD and keeps its .build,
    # so that a second run rebuilds only what changed.
    if [ -d "$R/root/ced/.git" ]; then
        git -C "$R/root/ced" fetch -q "$ROOT_DIR" HEAD && git -C "$R/root/ced" reset -q --hard FETCH_HEAD
        git -C "$R/root/ced" clean -q -fdx -e .build -e Package.resolved
    else
        git clone -q "$ROOT_DIR" "$R/root/ced"
    fi
    rm -rf "$R/root/deps"
    rm -rf "$R/root/shared" && cp -a "$shared" "$R/root/shared" && chmod -R u+w "$R/root/shared"
    local dep
    dep=$(ls -d "$HOME"/.cache/org.swift.swiftpm/repositories/swift-argument-parser-* 2>/dev/null | head -1 || true)
    if [ -z "$dep" ]; then (cd "$ROOT_DIR" && swift package resolve >/dev/null); dep=$(ls -d "$HOME"/.cache/org.swift.swiftpm/repositories/swift-argument-parser-* | head -1); fi
    mkdir -p "$R/root/deps" && git clone -q "$dep" "$R/root/deps/swift-argument-parser"
    "${CH[@]}" bash -c 'cd /root/ced && swift package config set-mirror --original https://github.com/apple/swift-argument-parser --mirror /root/deps/swift-argument-parser && swift package resolve' >/dev/null
    local filter=${CED_ARM64_FILTER:-'ModelGoldenTests|IndependentCaseTests|CheckpointEquivalenceTests|BF16Tests|Int8Tests|GEMMTests|RowKernelTests|FusedAttentionTests|TrainingKernelTests|PlatformTests|CLITests'}
    echo "== swift test -c release --filter '$filter' in the root (builds everything: 30+ minutes)"
    local start=$SECONDS status=0
    "${CH[@]}" CED_SHARED_DIR=/root/shared CI=1 bash -c "cd /root/ced && swift test -c release --filter '$filter' 2>&1" \
        > "$R/root/test.log" || status=$?
    grep -E "error:|Executed|failed|passed after" "$R/root/test.log" | tail -n 15
    echo "(tests: exit $status, $((SECONDS - start)) s; log: $R/root/test.log)"
    echo "== ced tag on the arm64 build against the reference"
    "${CH[@]}" bash -c 'cd /root && ced/.build/release/ced tag --model shared/reference/models/tiny --format json --top-k all \
        shared/reference/audio/*.wav' > "$R/root/tag.json"
    python3 scripts/arm64/compare_tag.py "$R/root/tag.json" "$shared/reference/golden/tiny.safetensors" || status=1
    echo "== ced bench --quick"
    "${CH[@]}" bash -c 'cd /root && ced/.build/release/ced bench --quick --models tiny' | tail -n 12
    [ $status -eq 0 ] && echo "check_arm64 --full: OK" || { echo "check_arm64 --full: FAILED"; exit 1; }
}

case "${1:-}" in
    "") kernels ;;
    --full) full ;;
    *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac
