/* filemap.c: a model file's bytes in memory, mapped or copied (see uhlm_load_mode in
 * common.h). */
#include "uhlm/common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The huge page size transparent huge pages use on x86-64 (and aarch64 with 4 KiB pages): the
 * copy is aligned to it so that every 2 MiB of weights can be one page. */
#define HUGE_ALIGN ((size_t)2 << 20)
/* One read() call's length. A single read of hundreds of MiB into not-yet-faulted huge-page
 * memory took 0.94 s for 438 MB here, 8 MiB reads 0.09 s: the kernel then faults the
 * destination in whole huge pages instead of copying into it page by page. */
#define READ_CHUNK ((size_t)8 << 20)

const char *uhlm_load_mode_name(uhlm_load_mode mode) {
    switch (mode) {
    case UHLM_LOAD_AUTO: return "auto";
    case UHLM_LOAD_MMAP: return "mmap";
    case UHLM_LOAD_COPY: return "copy";
    }
    return "?";
}

static void hold(uhlm_mmap *m, const void *p, size_t size, size_t map_size,
                 uhlm_load_mode mode) {
    m->data = p;
    m->size = size;
    m->map_size = map_size;
    m->mode = mode;
}

int uhlm_load_mode_from_name(const char *name, uhlm_load_mode *out) {
    static const uhlm_load_mode all[] = {UHLM_LOAD_AUTO, UHLM_LOAD_MMAP, UHLM_LOAD_COPY};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(name, uhlm_load_mode_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return -1;
}

/* The kernel's "available" memory in bytes, or 0 when /proc/meminfo cannot say. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* Reads one unsigned number from a file; 0 on success. "max" (cgroup v2: no limit) fails. */
static int read_u64(const char *path, uint64_t *v) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%" SCNu64, v) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

/* Memory this process's cgroup may still charge (its limit minus its usage), or UINT64_MAX
 * without a limit. In a container MemAvailable describes the host, and an anonymous copy is
 * charged to the cgroup in full where mapped file pages can be reclaimed; the usage counts
 * the page cache too, which errs toward mapping. cgroup v2, then v1. */
static uint64_t cgroup_available(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return UINT64_MAX;
    char line[512], v2[512] = "", v1[512] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "0::", 3)) snprintf(v2, sizeof v2, "%s", line + 3);
        const char *m = strstr(line, ":memory:");
        if (m) snprintf(v1, sizeof v1, "%s", m + 8);
    }
    fclose(f);
    char a[640], b[640];
    uint64_t lim, use;
    snprintf(a, sizeof a, "/sys/fs/cgroup%s/memory.max", v2);
    snprintf(b, sizeof b, "/sys/fs/cgroup%s/memory.current", v2);
    if (v2[0] && read_u64(a, &lim) == 0 && read_u64(b, &use) == 0)
        return lim > use ? lim - use : 0;
    snprintf(a, sizeof a, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", v1);
    snprintf(b, sizeof b, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", v1);
    if (v1[0] && read_u64(a, &lim) == 0 && read_u64(b, &use) == 0)
        return lim > use ? lim - use : 0;
    return UINT64_MAX;
}

/* Whether madvise(MADV_HUGEPAGE) can give anonymous memory huge pages: the
 * transparent_hugepage setting is "always" or "madvise", not "never" (or absent). */
static int thp_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char s[128] = {0};
    size_t n = fread(s, 1, sizeof s - 1, f);
    fclose(f);
    s[n] = 0;
    return strstr(s, "[always]") != NULL || strstr(s, "[madvise]") != NULL;
}

static uhlm_load_mode resolve(uhlm_load_mode mode, uint64_t size) {
    if (mode != UHLM_LOAD_AUTO) return mode;
    if (size < UHLM_LOAD_COPY_MIN || !thp_available()) return UHLM_LOAD_MMAP;
    uint64_t avail = mem_available(), cg = cgroup_available();
    if (cg < avail) avail = cg;
    return avail && size <= avail / 2 ? UHLM_LOAD_COPY : UHLM_LOAD_MMAP;
}

/* Reads the whole file into anonymous memory aligned to HUGE_ALIGN. The slack of one huge
 * page before the aligned start is unmapped again, so data/map_size cover only what is
 * kept. Returns 0, -1 with err set, or 1 when the memory could not be had and fall_back
 * allows the caller to map the file instead (AUTO: the copy is only an optimisation). */
static int copy_file(uhlm_mmap *m, int fd, const char *path, size_t size, int fall_back,
                     uhlm_error *err) {
    const size_t len = (size + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    if (len < size || len + HUGE_ALIGN < len)
        return uhlm_set_error(err, "%s: too large to copy into memory", path);
    uint8_t *raw = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED && fall_back) return 1;
    if (raw == MAP_FAILED)
        return uhlm_set_error(err, "%s: cannot allocate %zu bytes to load it into: %s "
                              "(--load mmap maps the file instead)", path, len, strerror(errno));
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (p + len < raw + len + HUGE_ALIGN) munmap(p + len, (size_t)(raw + len + HUGE_ALIGN - (p + len)));
    /* advice only: without huge pages the copy still works, just without their benefit */
    (void)madvise(p, len, MADV_HUGEPAGE);
    size_t off = 0;
    while (off < size) {
        size_t want = size - off < READ_CHUNK ? size - off : READ_CHUNK;
        ssize_t r = pread(fd, p + off, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            munmap(p, len);
            if (r == 0)
                return uhlm_set_error(err, "%s: file ended at byte %zu while being read (%zu "
                                      "expected): was it changed during loading?", path, off, size);
            return uhlm_set_error(err, "%s: read failed at byte %zu: %s", path, off, strerror(e));
        }
        off += (size_t)r;
    }
    /* the weights are never written: a stray write faults instead of corrupting them */
    if (mprotect(p, len, PROT_READ) != 0) {
        int e = errno;
        munmap(p, len);
        return uhlm_set_error(err, "%s: cannot make the copy read-only: %s", path, strerror(e));
    }
    hold(m, p, size, len, UHLM_LOAD_COPY);
    return 0;
}

int uhlm_file_load(uhlm_mmap *m, const char *path, uhlm_load_mode mode, uhlm_error *err) {
    memset(m, 0, sizeof *m);
    if (mode != UHLM_LOAD_AUTO && mode != UHLM_LOAD_MMAP && mode != UHLM_LOAD_COPY)
        return uhlm_set_error(err, "%s: unknown load mode %d", path, (int)mode);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return uhlm_set_error(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return uhlm_set_error(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return uhlm_set_error(err, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return uhlm_set_error(err, "%s: file is empty", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return uhlm_set_error(err, "%s: too large for this address space", path);
    }
    const size_t size = (size_t)st.st_size;
    if (resolve(mode, size) == UHLM_LOAD_COPY) {
        int rc = copy_file(m, fd, path, size, mode == UHLM_LOAD_AUTO, err);
        if (rc <= 0) {
            close(fd);
            return rc;
        }
    }
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return uhlm_set_error(err, "%s: cannot map: %s", path, strerror(e));
    hold(m, p, size, size, UHLM_LOAD_MMAP);
    return 0;
}

int uhlm_mmap_open(uhlm_mmap *m, const char *path, uhlm_error *err) {
    return uhlm_file_load(m, path, UHLM_LOAD_MMAP, err);
}

void uhlm_mmap_close(uhlm_mmap *m) {
    if (!m) return;
    /* the mapping is only ever read through data; munmap wants it non-const */
    if (m->data) munmap((void *)(uintptr_t)m->data, m->map_size);
    memset(m, 0, sizeof *m);
}

int64_t uhlm_file_huge_bytes(const uhlm_mmap *m) {
    if (!m || !m->data) return -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    const uintptr_t lo = (uintptr_t)m->data, hi = lo + m->map_size;
    const char *field = m->mode == UHLM_LOAD_COPY ? "AnonHugePages:" : "FilePmdMapped:";
    const size_t flen = strlen(field);
    char line[512];
    int64_t total = 0;
    int inside = 0, seen = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t a, b;
        /* a header line: "start-end perms ..."; field lines start with a capital letter */
        if (!(line[0] >= 'A' && line[0] <= 'Z') &&
            sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &a, &b) == 2) {
            inside = a < hi && b > lo;
            continue;
        }
        if (inside && !strncmp(line, field, flen)) {
            long long kb = 0;
            if (sscanf(line + flen, "%lld", &kb) == 1) total += kb * 1024;
            seen = 1;
        }
    }
    fclose(f);
    /* a copy's last huge page extends past the end of the file */
    return !seen ? -1 : total > (int64_t)m->size ? (int64_t)m->size : total;
}
