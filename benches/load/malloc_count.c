/*
 * malloc_count.so — counts a process's heap allocations, read from outside while it runs.
 *
 * docs/rust.md ("Stack and heap") quotes its figure: atomserve allocates per connection, not
 * per request. Loaded with LD_PRELOAD, it defines malloc, calloc, realloc, free and the aligned
 * allocators (memalign, posix_memalign, aligned_alloc, valloc, pvalloc; aligned_alloc without
 * glibc 2.38's check that the alignment is a power of two), counts each call and hands the work to glibc's own entry points (__libc_malloc…:
 * no dlsym, so no allocation of its own and no recursion). The counts live in a shared mapping
 * of the file named by MALLOC_COUNT_FILE, so another process reads them at any moment without
 * signalling the counted one:
 *
 *   gcc -O2 -shared -fPIC -o /tmp/malloc_count.so benches/load/malloc_count.c
 *   MALLOC_COUNT_FILE=/tmp/counts LD_PRELOAD=/tmp/malloc_count.so target/release/atomserve …
 *   od -An -t u8 -w8 -N 48 /tmp/counts   # malloc calloc realloc aligned free bytes
 *
 * Or let benches/load/malloc_count.sh do it around a batch of requests.
 *
 * Each count is one relaxed atomic add: counters only, nothing is ordered by them, and a reader
 * in another process sees each 8-byte value whole (aligned, on x86-64 and arm64). Allocations
 * before the constructor ran (the dynamic loader's own) are not counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

enum { MALLOC, CALLOC, REALLOC, ALIGNED, FREE, BYTES, SLOTS };
static uint64_t *counts; /* NULL until the constructor maps the file: then counting starts */

__attribute__((constructor)) static void map_counts(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, 4096) == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) counts = p;
    }
    close(fd); /* the mapping keeps the file's pages */
}

static inline void count(int slot, uint64_t n) {
    uint64_t *c = counts;
    if (c) __atomic_fetch_add(&c[slot], n, __ATOMIC_RELAXED);
}

void *malloc(size_t n) { count(MALLOC, 1); count(BYTES, n); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { count(CALLOC, 1); count(BYTES, k * n); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { count(REALLOC, 1); count(BYTES, n); return __libc_realloc(p, n); }
void free(void *p) { if (p) count(FREE, 1); __libc_free(p); }

void *memalign(size_t align, size_t n) { count(ALIGNED, 1); count(BYTES, n); return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
void *valloc(size_t n) { count(ALIGNED, 1); count(BYTES, n); return __libc_valloc(n); }
void *pvalloc(size_t n) { count(ALIGNED, 1); count(BYTES, n); return __libc_pvalloc(n); }
int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
