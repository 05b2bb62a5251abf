#ifndef CED_KERNELS_H
#define CED_KERNELS_H

// Innermost compute microkernels for CED. Only the hot loops live here; blocking,
// packing, threading and all model logic are in the Swift `CED` target.

#ifdef __cplusplus
extern "C" {
#endif

/// Bit set of CPU features detected at run time (cpuid on x86-64; 0 elsewhere).
enum {
    CED_CPU_AVX2_FMA = 1 << 0,
    CED_CPU_AVX512F = 1 << 1,
};
int ced_cpu_features(void);

#ifdef __cplusplus
}
#endif

#endif
