/* common.h: error reporting, read-only file mapping and a monotonic clock.
 *
 * Contract: every fallible function in libuhlm returns a status (0 ok, -1 error) or a
 * pointer (NULL on error) and fills a caller-owned uhlm_error with a one-line message that
 * names the file and what is wrong. Nothing prints on its own; the CLI decides.
 *
 * Also here, since every public header includes this one: the library version, the export
 * macro and the log callback type. */
#ifndef UHLM_COMMON_H
#define UHLM_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The version of the headers; uhlm_version() gives the library's, so a program can tell
 * when it runs against another build. CMake reads these three lines for the SONAME. */
#define UHLM_VERSION_MAJOR 0
#define UHLM_VERSION_MINOR 1
#define UHLM_VERSION_PATCH 0
#define UHLM_VERSION_STR_(x) #x
#define UHLM_VERSION_XSTR_(x) UHLM_VERSION_STR_(x)
#define UHLM_VERSION                                                                              \
    UHLM_VERSION_XSTR_(UHLM_VERSION_MAJOR)                                                        \
    "." UHLM_VERSION_XSTR_(UHLM_VERSION_MINOR) "." UHLM_VERSION_XSTR_(UHLM_VERSION_PATCH)

/* The library is built with -fvisibility=hidden: only declarations marked UHLM_API are
 * exported from libuhlm.so, so internal kernels and helpers are not part of the ABI. */
#if defined(__GNUC__) || defined(__clang__)
#define UHLM_API __attribute__((visibility("default")))
#else
#define UHLM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library actually linked (UHLM_VERSION is the headers'). */
UHLM_API const char *uhlm_version(void);

typedef struct uhlm_error {
    char msg[512];
} uhlm_error;

/* One line of log text, without a newline. Every library part that logs takes one of these
 * and a user pointer (uhlm_server_params, uhlm_remote_params), so an embedder routes all of
 * them through one function. msg is valid only during the call; a NULL function is silence. */
typedef void (*uhlm_log_fn)(void *user, const char *msg);

/* A ready uhlm_log_fn: user is a FILE * (stderr, an opened file); writes msg and a newline in
 * one fputs, then flushes, so that lines of several processes sharing a stream stay whole. */
UHLM_API void uhlm_log_file(void *user, const char *msg);

/* Long calls (uhlm_device_step / uhlm_device_run, uhlm_generate) poll a cancel callback
 * before each token; a nonzero answer stops them there, with every token so far kept, and
 * they return UHLM_CANCELLED (distinct from the -1 of an error). */
typedef int (*uhlm_cancel_fn)(void *user);
#define UHLM_CANCELLED (-2)

/* Formats into err->msg (err may be NULL). Always returns -1 so callers can
 * `return uhlm_set_error(err, ...);`. */
UHLM_API int uhlm_set_error(uhlm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* How a model file's bytes are brought into memory.
 *
 * MMAP maps the file read-only: nothing is copied, pages come in as they are first touched
 * and are shared with every other process using the file, and a file larger than free
 * memory still runs. COPY reads it into private memory aligned to 2 MiB, for which the kernel
 * is asked for transparent huge pages (madvise); it costs a read of the file at load and
 * memory that is not shared. Why it exists: a decode step streams every weight once, and
 * with 4 KiB pages that stream walks a new page (a TLB miss, and a stop for the hardware
 * prefetcher) every 4 KiB. Whether the page cache maps a file with huge pages depends on
 * how and when the file's pages were read; the same F32 110M-shape GGUF decoded at 50-58
 * tok/s mapped and 67-68 copied on one machine (docs/performance.md). AUTO copies files of
 * at least UHLM_LOAD_COPY_MIN bytes when the kernel offers transparent huge pages to
 * madvise and the file takes at most half the memory the kernel calls available (and half of
 * what the process's cgroup may still use, in a container with a memory limit), and maps
 * otherwise, or when that memory cannot be allocated after all. The bytes, and therefore
 * every result, are the same whichever is used. */
typedef enum uhlm_load_mode {
    UHLM_LOAD_AUTO = 0,
    UHLM_LOAD_MMAP = 1,
    UHLM_LOAD_COPY = 2
} uhlm_load_mode;
#define UHLM_LOAD_COPY_MIN (16u << 20)
UHLM_API const char *uhlm_load_mode_name(uhlm_load_mode mode); /* "auto", "mmap", "copy" */
UHLM_API int uhlm_load_mode_from_name(const char *name, uhlm_load_mode *out); /* 0, -1 unknown */

/* A whole file in memory, read-only to its users: mapped, or copied (see uhlm_load_mode). */
typedef struct uhlm_mmap {
    const uint8_t *data;
    size_t size;
    uhlm_load_mode mode; /* what was done: MMAP or COPY, never AUTO */
    size_t map_size;     /* the mapping's length from data: size, or a copy's 2 MiB multiple */
} uhlm_mmap;

/* = uhlm_file_load(m, path, UHLM_LOAD_MMAP, err) */
UHLM_API int uhlm_mmap_open(uhlm_mmap *m, const char *path, uhlm_error *err);
UHLM_API int uhlm_file_load(uhlm_mmap *m, const char *path, uhlm_load_mode mode,
                            uhlm_error *err);
UHLM_API void uhlm_mmap_close(uhlm_mmap *m);
/* Bytes of m that the kernel backs with huge pages now (from /proc/self/smaps; a copy's
 * AnonHugePages, a mapping's FilePmdMapped), or -1 where that cannot be read. */
UHLM_API int64_t uhlm_file_huge_bytes(const uhlm_mmap *m);

/* The default limit on a file read whole by uhlm_read_file (prompt sets, calibration results);
 * the CLI's --max-input-mb raises it. */
#define UHLM_INPUT_MAX_MB 64

/* Reads a whole regular file of at most max_bytes (0: UHLM_INPUT_MAX_MB MiB) into *buf
 * (malloc'd, with a NUL after the *len bytes). Devices, FIFOs, directories and larger files
 * are refused at once, without reading, with a message saying why. what names the file in
 * errors: "cannot open WHAT file PATH". */
UHLM_API int uhlm_read_file_max(const char *path, const char *what, uint64_t max_bytes, char **buf,
                       size_t *len, uhlm_error *err);
/* uhlm_read_file_max with the default limit. */
UHLM_API int uhlm_read_file(const char *path, const char *what, char **buf, size_t *len, uhlm_error *err);

/* Monotonic wall-clock seconds. */
UHLM_API double uhlm_now(void);

/* FNV-1a 64-bit, used for model fingerprints. */
UHLM_API uint64_t uhlm_fnv1a(uint64_t h, const void *data, size_t n);
#define UHLM_FNV_INIT 0xcbf29ce484222325ULL

#ifdef __cplusplus
}
#endif
#endif
