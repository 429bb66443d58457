/* test_threadpool.c: the pool's contract (threadpool.h): every index of [0, n) exactly once,
 * valid thread ids, no two ranges at once on one tid, the caller sees all writes when run
 * returns, inline execution for a NULL pool, and no lost wakeups over many short runs on both
 * the spinning and the sleeping paths; a worker stalled inside a range sends the caller solo
 * for a while, and threads are used again after the back-off. */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "model/threadpool.h"

#define MAXN 20000
#define MAXT 16

typedef struct {
    int64_t n, grain;
    int size;
    _Atomic int count[MAXN];
    int value[MAXN]; /* plain writes: checks that run() publishes them to the caller */
    _Atomic int busy[MAXT];
    _Atomic int bad_range, bad_tid, overlap, calls;
    _Atomic int tid_seen[MAXT];
    int sleep_us;
} cover_job;

static void cover_task(void *arg, int64_t b, int64_t e, int tid) {
    cover_job *j = arg;
    atomic_fetch_add(&j->calls, 1);
    if (b < 0 || e > j->n || b >= e) {
        atomic_store(&j->bad_range, 1);
        return;
    }
    /* only the range that ends at n may be shorter than the grain */
    if (e != j->n && e - b < j->grain) atomic_store(&j->bad_range, 1);
    if (tid < 0 || tid >= j->size || tid >= MAXT) {
        atomic_store(&j->bad_tid, 1);
        return;
    }
    if (atomic_exchange(&j->busy[tid], 1) != 0) atomic_store(&j->overlap, 1);
    atomic_store(&j->tid_seen[tid], 1);
    for (int64_t i = b; i < e; i++) {
        atomic_fetch_add_explicit(&j->count[i], 1, memory_order_relaxed);
        j->value[i] = (int)(i * 7 + 1);
    }
    if (j->sleep_us) {
        struct timespec ts = {0, (long)j->sleep_us * 1000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&j->busy[tid], 0);
}

static void reset(cover_job *j, int64_t n, int size) {
    memset(j, 0, sizeof *j);
    j->n = n;
    j->size = size;
}

/* Runs one cover job and checks it; returns 1 when everything held. */
static int cover_once(uhlm_pool *p, cover_job *j, int64_t n, int64_t grain) {
    reset(j, n, uhlm_pool_size(p));
    j->grain = grain;
    uhlm_pool_run(p, cover_task, j, n, grain);
    int ok = !j->bad_range && !j->bad_tid && !j->overlap;
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&j->count[i]) != 1 || j->value[i] != (int)(i * 7 + 1)) ok = 0;
    if (n == 0 && j->calls != 0) ok = 0;
    return ok;
}

typedef struct {
    _Atomic int64_t sum;
    _Atomic int calls;
    int slow;
    _Atomic int tids; /* bit per thread id that ran a range */
} sum_job;

static void sum_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    sum_job *j = arg;
    int64_t s = 0;
    for (int64_t i = b; i < e; i++) s += i;
    if (j->slow) {
        /* about a microsecond per index, so runs last long enough for workers to join */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do clock_gettime(CLOCK_MONOTONIC, &t1);
        while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 1000L * (e - b));
    }
    atomic_fetch_add(&j->sum, s);
    atomic_fetch_add(&j->calls, 1);
    atomic_fetch_or(&j->tids, 1 << (tid & 15));
}

static void test_null_pool(cover_job *j) {
    reset(j, 100, 1);
    uhlm_pool_run(NULL, cover_task, j, 100, 1);
    CHECK(j->calls == 1); /* inline, one range covering everything */
    CHECK(cover_once(NULL, j, 100, 7));
    CHECK(cover_once(NULL, j, 0, 1));
    CHECK(uhlm_pool_size(NULL) == 1);
    uhlm_pool_free(NULL); /* must be a no-op */
}

static void test_sizes(void) {
    uhlm_error err = {{0}};
    uhlm_pool *p = uhlm_pool_new(0, &err);
    CHECKF(p != NULL, "%s", err.msg);
    if (p) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        CHECKF(uhlm_pool_size(p) >= 1 && uhlm_pool_size(p) <= ncpu, "size %d cpus %ld",
               uhlm_pool_size(p), ncpu);
        uhlm_pool_free(p);
    }
    for (int t = 1; t <= 8; t++) {
        p = uhlm_pool_new(t, &err);
        CHECKF(p && uhlm_pool_size(p) == t, "%d threads: %s", t, err.msg);
        uhlm_pool_free(p);
    }
    err.msg[0] = 0;
    p = uhlm_pool_new(100000, &err);
    CHECK(p == NULL && err.msg[0] != 0);
    uhlm_pool_free(p);
}

static void test_coverage(cover_job *j) {
    const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 63, 64, 65, 1000, 4099, MAXN};
    const int64_t grains[] = {0, 1, 2, 3, 7, 16, 100, 5000, 1000000};
    for (int t = 1; t <= 5; t++) {
        uhlm_error err;
        uhlm_pool *p = uhlm_pool_new(t, &err);
        CHECKF(p != NULL, "%s", err.msg);
        if (!p) continue;
        int fails = 0;
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++)
                if (!cover_once(p, j, ns[a], grains[b])) {
                    fails++;
                    fprintf(stderr, "threads %d n %lld grain %lld: coverage broken\n", t,
                            (long long)ns[a], (long long)grains[b]);
                }
        CHECK(fails == 0);
        uhlm_pool_free(p);
    }
}

/* With slow ranges, every thread of the pool gets work: the pool really is parallel. On a
 * loaded host a worker may not be scheduled during one whole run (the caller then takes its
 * ranges, which is correct), so a run counts as proof when all threads took part in it, and a
 * pool gets five runs to show it; a pool whose workers never run fails all five. */
static void test_all_threads_work(cover_job *j) {
    for (int t = 2; t <= 3; t++) {
        uhlm_error err;
        uhlm_pool *p = uhlm_pool_new(t, &err);
        CHECKF(p != NULL, "%s", err.msg);
        if (!p) continue;
        int seen = 0;
        for (int attempt = 0; attempt < 5 && seen != t; attempt++) {
            reset(j, 64, t);
            j->sleep_us = 2000;
            uhlm_pool_run(p, cover_task, j, 64, 1);
            seen = 0;
            for (int i = 0; i < t; i++) seen += atomic_load(&j->tid_seen[i]);
            CHECK(!j->overlap && !j->bad_tid);
        }
        CHECKF(seen == t, "%d threads, %d took part (best of 5 runs)", t, seen);
        uhlm_pool_free(p);
    }
}

/* Many tiny runs back to back: lost wakeups hang here, races show as wrong sums. Every run
 * uses grain 1 so all workers take part. Some pauses exceed the spin window so the
 * sleep/wake path gets exercised too. */
static void test_many_runs(void) {
    for (int slow = 0; slow <= 1; slow++)
        for (int t = 1; t <= 4; t++) {
            uhlm_error err;
            uhlm_pool *p = uhlm_pool_new(t, &err);
            CHECKF(p != NULL, "%s", err.msg);
            if (!p) continue;
            int bad = 0, helped = 0;
            const int runs = slow ? 3000 : 10000;
            for (int r = 0; r < runs; r++) {
                sum_job s;
                memset(&s, 0, sizeof s);
                s.slow = slow;
                int64_t n = 1 + r % 37;
                uhlm_pool_run(p, sum_task, &s, n, 1);
                if (atomic_load(&s.sum) != n * (n - 1) / 2) bad++;
                if (atomic_load(&s.tids) & ~1) helped++;
                if (r % 1000 == 999) {
                    struct timespec ts = {0, 1000000L}; /* 1 ms: workers fall asleep */
                    nanosleep(&ts, NULL);
                }
            }
            CHECKF(bad == 0, "%d threads: %d wrong sums", t, bad);
            /* with slow ranges the workers must really take part */
            if (slow && t > 1) CHECKF(helped > 0, "%d threads: workers never ran a range", t);
            uhlm_pool_free(p);
        }
}

/* Regression: back-to-back jobs whose chunk counts alternate small/large. A worker that read
 * the finished small job's claim word and then the next job's larger chunk count could claim a
 * phantom chunk, corrupting the sums or making `done` overshoot so the caller waited forever.
 * The alarm turns such a hang into a failure instead of a CTest timeout. */
static void test_alternating_jobs(void) {
    alarm(120);
    for (int t = 2; t <= 4; t++) {
        uhlm_error err;
        uhlm_pool *p = uhlm_pool_new(t, &err);
        CHECKF(p != NULL, "%s", err.msg);
        if (!p) continue;
        int bad = 0;
        for (int r = 0; r < 100000; r++) {
            sum_job s;
            memset(&s, 0, sizeof s);
            const int64_t n = (r & 1) ? 2 + r % 5 : 64 + r % 31;
            uhlm_pool_run(p, sum_task, &s, n, 1);
            if (atomic_load(&s.sum) != n * (n - 1) / 2) bad++;
        }
        CHECKF(bad == 0, "%d threads: %d wrong sums", t, bad);
        uhlm_pool_free(p);
    }
    alarm(0);
}

/* A worker that is "descheduled" (sleeps 200 ms) inside its first range while the caller's
 * ranges are quick: the run still covers everything, the pool counts a stall, and the runs
 * right after it are done inline by the caller (tid 0 only). Timing-based, so each part gets
 * five tries: a loaded host can delay the caller past the 2 ms solo window. */
typedef struct {
    _Atomic int worker_in, count[64];
    int stall_ms;
} stall_job;

static void stall_task(void *arg, int64_t b, int64_t e, int tid) {
    stall_job *j = arg;
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->count[i], 1);
    if (tid != 0 && atomic_exchange(&j->worker_in, 1) == 0) {
        struct timespec ts = {0, (long)j->stall_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* the caller's first range waits (up to 1 s) until a worker holds a range */
    for (int k = 0; tid == 0 && k < 100000 && !atomic_load(&j->worker_in); k++) {
        struct timespec ts = {0, 10000L};
        nanosleep(&ts, NULL);
    }
}

static void test_stall_backoff(void) {
    uhlm_error err;
    uhlm_pool *p = uhlm_pool_new(2, &err);
    CHECKF(p != NULL, "%s", err.msg);
    if (!p) return;
    int stalled = 0, solo = 0, covered = 1;
    for (int attempt = 0; attempt < 5 && !(stalled && solo); attempt++) {
        stall_job *j = calloc(1, sizeof *j);
        if (!j) break;
        j->stall_ms = 200;
        const uhlm_pool_stats s0 = uhlm_pool_get_stats(p);
        uhlm_pool_run(p, stall_task, j, 64, 1);
        for (int i = 0; i < 64; i++) covered &= atomic_load(&j->count[i]) == 1;
        const uhlm_pool_stats s1 = uhlm_pool_get_stats(p);
        stalled = s1.stalls > s0.stalls;
        sum_job s;
        memset(&s, 0, sizeof s);
        s.slow = 1;
        uhlm_pool_run(p, sum_task, &s, 37, 1);
        covered &= atomic_load(&s.sum) == 37 * 36 / 2;
        solo = uhlm_pool_get_stats(p).solo_runs > s1.solo_runs && atomic_load(&s.tids) == 1;
        free(j);
    }
    CHECK(covered);
    CHECKF(stalled, "a worker stalled 200 ms inside a range was not counted as a stall");
    CHECKF(solo, "the run after a stall was not done by the caller alone");
    /* after the back-off the worker takes part again */
    struct timespec ts = {0, 300000000L};
    nanosleep(&ts, NULL);
    int helped = 0;
    for (int attempt = 0; attempt < 5 && !helped; attempt++) {
        /* many short runs: the first ones wake the sleeping worker, later ones find it spinning */
        for (int r = 0; r < 200 && !helped; r++) {
            sum_job s;
            memset(&s, 0, sizeof s);
            s.slow = 1;
            uhlm_pool_run(p, sum_task, &s, 37, 1);
            helped = (atomic_load(&s.tids) & ~1) != 0;
        }
        /* past any solo window a stall of this attempt may have opened (at most 128 ms) */
        if (!helped) {
            struct timespec w = {0, 150000000L};
            nanosleep(&w, NULL);
        }
    }
    CHECKF(helped, "threads were not used again after the back-off");
    uhlm_pool_free(p);
}

/* Creating and freeing pools in a loop: threads must be joined, nothing leaks (ASan). */
static void test_churn(void) {
    int ok = 1;
    for (int i = 0; i < 50; i++) {
        uhlm_error err;
        uhlm_pool *p = uhlm_pool_new(1 + i % 4, &err);
        if (!p) {
            ok = 0;
            break;
        }
        if (i % 2) {
            sum_job s;
            memset(&s, 0, sizeof s);
            uhlm_pool_run(p, sum_task, &s, 100, 1);
            if (atomic_load(&s.sum) != 4950) ok = 0;
        }
        uhlm_pool_free(p);
    }
    CHECK(ok);
}

int main(void) {
    cover_job *j = calloc(1, sizeof *j);
    CHECK(j != NULL);
    if (!j) return check_report();
    test_null_pool(j);
    test_sizes();
    test_coverage(j);
    test_all_threads_work(j);
    test_many_runs();
    test_churn();
    test_stall_backoff();
    test_alternating_jobs();
    free(j);
    return check_report();
}
