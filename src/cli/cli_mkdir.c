/* cli_mkdir.c: `mkdir -p`. */
#include "cli/cli_mkdir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

/* One folder: made, or already a folder. */
static int make_one(const char *dir, const char *full, uhlm_error *err) {
    if (mkdir(dir, 0777) == 0) return 0;
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        e = ENOTDIR;
    }
    return uhlm_set_error(err, "cannot create output folder %s (for %s): %s", dir, full,
                          strerror(e));
}

int cli_mkdir_p(const char *dir, uhlm_error *err) {
    size_t n = strlen(dir);
    if (n == 0) return uhlm_set_error(err, "empty output folder name");
    char *p = malloc(n + 1);
    if (!p) return uhlm_set_error(err, "out of memory");
    memcpy(p, dir, n + 1);
    int rc = 0;
    /* each prefix ending before a '/' (not the root's), then the whole path */
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (p[i] != '/' || p[i - 1] == '/') continue;
        p[i] = '\0';
        rc = make_one(p, dir, err);
        p[i] = '/';
    }
    if (rc == 0) rc = make_one(p, dir, err);
    free(p);
    return rc;
}

int cli_mkdir_parent(const char *path, uhlm_error *err) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return 0; /* the current folder, or the root */
    size_t n = (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (!dir) return uhlm_set_error(err, "out of memory");
    memcpy(dir, path, n);
    dir[n] = '\0';
    int rc = cli_mkdir_p(dir, err);
    free(dir);
    return rc;
}
