// Heap allocation counter for `ced bench` (not part of the package). Built and preloaded by
// scripts/bench.sh:  cc -O2 -shared -fPIC -o alloc_count.so alloc_count.c
//                    LD_PRELOAD=./alloc_count.so ced bench ...
// It interposes glibc's allocation entry points, counts calls and requested bytes (all
// threads, relaxed atomics) and forwards to glibc's own implementations. `ced bench` finds
// `ced_alloc_stats` with dlsym and reports the allocations per clip around model calls.
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Atomic uint64_t calls, requested;

static inline void count(size_t n) {
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&requested, n, memory_order_relaxed);
}

void *malloc(size_t n) { count(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count(n); return __libc_realloc(p, n); }
void *memalign(size_t align, size_t n) { count(n); return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { count(n); return __libc_memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    count(n);
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/// out[0] = allocation calls so far, out[1] = bytes requested so far.
void ced_alloc_stats(uint64_t out[2]) {
    out[0] = atomic_load_explicit(&calls, memory_order_relaxed);
    out[1] = atomic_load_explicit(&requested, memory_order_relaxed);
}
