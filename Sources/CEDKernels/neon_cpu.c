// CPU features of AArch64 (the x86 detection is in cpu.c). Advanced SIMD (NEON) is part of
// the AArch64 baseline; the optional extensions the int8 and bf16 kernels use are asked of
// the operating system: getauxval(AT_HWCAP/AT_HWCAP2) on Linux (and Android),
// sysctlbyname("hw.optional.arm.FEAT_…") on Apple platforms (macOS 12+, iOS 15+).

#include "CEDKernels.h"

static int ced_feature_mask = 0;

void ced_cpu_mask_features(int mask) { __atomic_store_n(&ced_feature_mask, mask, __ATOMIC_RELAXED); }

#if defined(__aarch64__)

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>

static int ced_sysctl_flag(const char *name) {
    int value = 0;
    size_t size = sizeof value;
    if (sysctlbyname(name, &value, &size, NULL, 0) != 0) return 0;
    return value != 0;
}

static int ced_detect_arm(void) {
    int f = CED_CPU_NEON;
    if (ced_sysctl_flag("hw.optional.arm.FEAT_DotProd")) f |= CED_CPU_DOTPROD;
    if (ced_sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= CED_CPU_I8MM;
    if (ced_sysctl_flag("hw.optional.arm.FEAT_BF16")) f |= CED_CPU_BF16;
    return f;
}

#elif defined(__linux__)
#include <sys/auxv.h>

// The bits of <asm/hwcap.h> (stable kernel ABI), spelled out for older headers.
#define CED_HWCAP_ASIMDDP (1UL << 20)
#define CED_HWCAP2_I8MM (1UL << 13)
#define CED_HWCAP2_BF16 (1UL << 14)
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif

static int ced_detect_arm(void) {
    int f = CED_CPU_NEON;
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & CED_HWCAP_ASIMDDP) f |= CED_CPU_DOTPROD;
    if (hw2 & CED_HWCAP2_I8MM) f |= CED_CPU_I8MM;
    if (hw2 & CED_HWCAP2_BF16) f |= CED_CPU_BF16;
    return f;
}

#else
static int ced_detect_arm(void) { return CED_CPU_NEON; }   // other systems: no way to ask
#endif

int ced_cpu_features(void) {
    static int cached = -1;   // every thread that races here computes the same value
    int f = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (f < 0) {
        f = ced_detect_arm();
        __atomic_store_n(&cached, f, __ATOMIC_RELAXED);
    }
    return f & ~(__atomic_load_n(&ced_feature_mask, __ATOMIC_RELAXED) & ~CED_CPU_NEON);
}

#endif
