#include "CEDKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

static unsigned long long ced_xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

int ced_cpu_features(void) {
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
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int has_avx2 = (b >> 5) & 1;
    int has_avx512f = (b >> 16) & 1;
    if (ymm_ok && has_avx2 && has_fma) features |= CED_CPU_AVX2_FMA;
    if (zmm_ok && has_avx512f && has_fma) features |= CED_CPU_AVX512F;
    return features;
}
#else
int ced_cpu_features(void) { return 0; }
#endif
