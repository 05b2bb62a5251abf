#include "CEDKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static unsigned long long ced_xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/// Linux hands out the (8 KB) AMX tile state only to processes that ask for it.
static int ced_amx_permission(void) {
#if defined(__linux__)
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return 0;  // other systems: not used (no portable way to ask)
#endif
}

static int ced_detect(void) {
    unsigned int a, b, c, d;
    int features = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int has_fma = (c >> 12) & 1;
    int has_osxsave = (c >> 27) & 1;
    int has_avx = (c >> 28) & 1;
    if (!(has_osxsave && has_avx)) return 0;
    unsigned long long xcr0 = ced_xgetbv0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = (xcr0 & 0xE6) == 0xE6;
    int tile_ok = (xcr0 & 0x60000) == 0x60000;   // XTILECFG | XTILEDATA
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int has_avx2 = (b >> 5) & 1;
    int has_avx512f = (b >> 16) & 1;
    int has_avx512bw = (b >> 30) & 1;
    int has_amx_bf16 = (d >> 22) & 1;
    int has_amx_tile = (d >> 24) & 1;
    int has_amx_int8 = (d >> 25) & 1;
    int has_avx512_vnni = (c >> 11) & 1;
    int max_sub = (int)a;
    int has_avx512_bf16 = 0, has_avx_vnni = 0;
    if (max_sub >= 1) {
        unsigned int a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        has_avx512_bf16 = (a1 >> 5) & 1;
        has_avx_vnni = (a1 >> 4) & 1;
    }
    if (ymm_ok && has_avx2 && has_fma) {
        features |= CED_CPU_AVX2_FMA;
        if (has_avx_vnni) features |= CED_CPU_AVX_VNNI;
    }
    if (zmm_ok && has_avx512f && has_fma) {
        features |= CED_CPU_AVX512F;
        if (has_avx512bw && has_avx512_vnni) features |= CED_CPU_AVX512_VNNI;
        if (has_avx512bw && has_avx512_bf16) {
            features |= CED_CPU_AVX512_BF16;
            if (has_amx_tile && has_amx_bf16 && tile_ok && ced_amx_permission()) {
                features |= CED_CPU_AMX_BF16;
                if (has_amx_int8) features |= CED_CPU_AMX_INT8;
            }
        }
    }
    return features;
}

int ced_cpu_features(void) {
    static int cached = -1;   // every thread that races here computes the same value
    int f = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (f < 0) {
        f = ced_detect();
        __atomic_store_n(&cached, f, __ATOMIC_RELAXED);
    }
    return f;
}
#elif !defined(__aarch64__)
int ced_cpu_features(void) { return 0; }
#endif
// AArch64: neon_cpu.c.
