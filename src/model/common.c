/* common.c: error formatting, clock, hashing, whole-file reads (see common.h). */
#include "uhlm/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int uhlm_set_error(uhlm_error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *uhlm_version(void) { return UHLM_VERSION; }

double uhlm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t uhlm_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Input files (prompt sets, calibration results) are read whole into memory, so a device, a
 * FIFO or an endless or huge file would read until memory runs out, or block: only regular
 * files up to max_bytes are read. O_NONBLOCK keeps the open of a FIFO without a writer from
 * blocking before fstat can refuse it; it has no effect on a regular file. */
int uhlm_read_file_max(const char *path, const char *what, uint64_t max_bytes, char **buf,
                       size_t *len, uhlm_error *err) {
    *buf = NULL;
    *len = 0;
    if (max_bytes == 0) max_bytes = (uint64_t)UHLM_INPUT_MAX_MB << 20;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return uhlm_set_error(err, "cannot open %s file %s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return uhlm_set_error(err, "cannot stat %s file %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return uhlm_set_error(err,
                              "%s file %s is not a regular file (%s): only regular files are read",
                              what, path,
                              S_ISDIR(st.st_mode)    ? "a directory"
                              : S_ISFIFO(st.st_mode) ? "a FIFO or pipe"
                              : S_ISCHR(st.st_mode)  ? "a character device"
                              : S_ISBLK(st.st_mode)  ? "a block device"
                              : S_ISSOCK(st.st_mode) ? "a socket"
                                                     : "not a file");
    }
    if ((uint64_t)st.st_size > max_bytes || max_bytes >= SIZE_MAX) {
        close(fd);
        return uhlm_set_error(err,
                              "%s file %s is %llu bytes, over the input limit of %llu bytes "
                              "(%.0f MiB; the CLI's --max-input-mb raises it)",
                              what, path, (unsigned long long)st.st_size,
                              (unsigned long long)max_bytes, (double)max_bytes / 1048576.0);
    }
    /* the file may grow while it is read: read at most one byte past the limit to notice */
    size_t cap = (size_t)st.st_size + 2, n = 0;
    char *b = malloc(cap);
    if (!b) {
        close(fd);
        return uhlm_set_error(err, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 == cap) { /* keep a byte for the NUL */
            if (n > max_bytes) break;
            size_t nc = cap * 2 > max_bytes + 2 ? (size_t)max_bytes + 2 : cap * 2;
            char *nb = realloc(b, nc);
            if (!nb) {
                free(b);
                close(fd);
                return uhlm_set_error(err, "%s: out of memory", path);
            }
            b = nb;
            cap = nc;
        }
        ssize_t k = read(fd, b + n, cap - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(b);
            close(fd);
            return uhlm_set_error(err, "error reading %s file %s: %s", what, path, strerror(e));
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (n > max_bytes) {
        free(b);
        return uhlm_set_error(err,
                              "%s file %s grew past the input limit of %llu bytes while it was "
                              "read (the CLI's --max-input-mb raises it)",
                              what, path, (unsigned long long)max_bytes);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int uhlm_read_file(const char *path, const char *what, char **buf, size_t *len, uhlm_error *err) {
    return uhlm_read_file_max(path, what, 0, buf, len, err);
}
