/* threadpool.c: a fixed pool of persistent pthreads that runs one data-parallel loop at a time
 * (see threadpool.h).
 *
 * The forward pass calls uhlm_pool_run about ten times per layer per token, so the cost that
 * matters is the latency of handing a loop to threads that are already awake. A run publishes
 * the job and bumps an atomic generation counter; workers spin on that counter for a short
 * while after each job and only then fall back to a condition variable. The caller waits for
 * completion the same way. Waking a sleeper costs a mutex and a broadcast, which is paid only
 * when a worker has actually gone to sleep (a Dekker-style check on a sleeper count).
 *
 * Work inside a run is handed out in chunks, claimed by a CAS on one (generation, next chunk)
 * word. The caller takes chunks too and then waits only for chunks that were claimed: a worker
 * the OS has descheduled (other processes on the machine, more threads than cores) never
 * delays a run it did not join; it just finds the job gone when it wakes. Which thread runs
 * which range is therefore not fixed; the contract (each index exactly once) is what kernels
 * rely on for determinism.
 *
 * A worker that the OS deschedules after claiming a chunk still holds up the run until it runs
 * again, a whole time slice (milliseconds) when another process wants its core, while a decode
 * step's loop takes tens of microseconds. Measured on a 2-core VM with the other core busy:
 * 2 threads decoded slower than 1 (119-139 against 174-184 tok/s). So the caller notices such
 * stalls, a wait for the last chunks far longer than its own chunks took, and then runs the
 * loops alone for a while (the workers go to sleep), trying threads again after 2 ms, then 4,
 * 8, ... up to 128 ms while the stalls go on. A run without stall is cheap to detect, and the
 * back-off starts over after many of them. Results do not change: the split never does. */
#include "model/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle thread spins before sleeping. Long enough to cover the serial work between
 * two loops of one forward pass (norms, residual adds: a few microseconds), short enough that
 * an idle context does not burn a core for long. */
#define SPIN_NS 200000LL
/* Pause instructions between clock reads while spinning. */
#define SPIN_CHECK 64
/* Low word of a claim word whose job takes no more claims: above any chunk count. */
#define CLAIM_CLOSED 0xFFFFFFFFu
/* Upper bound on threads, to reject nonsense sizes before allocating. */
#define MAX_THREADS 1024
/* A stall: the caller waited for other threads' chunks longer than STALL_FACTOR times its own
 * mean chunk time plus STALL_MIN_NS (a loaded core's wakeup and cache misses stay below). */
#define STALL_MIN_NS 50000LL
#define STALL_FACTOR 4
/* Solo periods after a stall: the first, the longest, and the clean parallel runs after which
 * the next stall starts over from the first. */
#define SOLO_FIRST_NS 2000000LL
#define SOLO_MAX_NS 128000000LL
#define CLEAN_RESET 1000

typedef struct {
    uhlm_pool *pool;
    int tid;
} worker_arg;

struct uhlm_pool {
    int n_threads;     /* including the caller's thread (tid 0) */
    int n_workers;     /* threads actually started: n_threads - 1 once construction succeeds */
    long long spin_ns; /* 0 when oversubscribed: spinning would steal the core a peer needs */
    uint32_t gen;      /* caller-owned: generation of the last job */
    /* caller-owned stall back-off (see the top of this file) */
    long long solo_until_ns, solo_ns;
    int clean_runs;
    uhlm_pool_stats stats;
    pthread_t *threads;
    worker_arg *args;

    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers sleep here waiting for a new generation */
    pthread_cond_t cv_done; /* the caller sleeps here waiting for the last range */
    int mu_ok, cv_work_ok, cv_done_ok;

    /* The job, published by the release store of `work`. Atomics (accessed relaxed) because a
     * late worker may read them while the caller already writes the next job; such a worker
     * then fails its claim and never uses what it read. */
    _Atomic(uhlm_task_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n, chunk, nchunks;

    /* (generation << 32) | next unclaimed chunk. Claiming a chunk is a CAS on the whole word,
     * so a worker that wakes after its job ended cannot take a chunk of the next one by
     * mistake, and the caller never waits for workers that did not show up. */
    _Atomic uint64_t work;
    _Atomic int64_t done; /* items finished in the current job */
    _Atomic int work_sleepers;   /* workers blocked (or about to block) on cv_work */
    _Atomic int caller_sleeping;
    _Atomic int stop;
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int online_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) return c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

/* Claims and runs chunks of job `gen` until none is left or a newer job replaced it; returns
 * how many it ran. */
static int64_t run_chunks(uhlm_pool *p, uint32_t gen, int tid) {
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    int64_t ran = 0;
    for (;;) {
        if ((uint32_t)(w >> 32) != gen) return ran;
        const int64_t c = (int64_t)(uint32_t)w;
        const int64_t nchunks = atomic_load_explicit(&p->nchunks, memory_order_relaxed);
        if (c >= nchunks) return ran;
        const int64_t n = atomic_load_explicit(&p->n, memory_order_relaxed);
        const int64_t chunk = atomic_load_explicit(&p->chunk, memory_order_relaxed);
        uhlm_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
        /* Seqlock-style validation. The caller closes the claim word before it rewrites the
         * fields (see uhlm_pool_run), so if any field read above came from the next job, this
         * fence makes the close visible to the CAS, which then fails. Success therefore means
         * job `gen` still had chunk c unclaimed and every field read above is its own. */
        atomic_thread_fence(memory_order_acquire);
        if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acquire,
                                                   memory_order_acquire))
            continue;
        const int64_t b = c * chunk, e = n - b < chunk ? n : b + chunk;
        fn(arg, b, e, tid);
        ran++;
        /* release: the caller's acquire load of done makes this range's writes visible */
        if (atomic_fetch_add(&p->done, e - b) + (e - b) == n && tid != 0 &&
            atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
        w = atomic_load_explicit(&p->work, memory_order_acquire);
    }
}

/* Returns the generation once it differs from seen, or seen when stop is set. */
static uint32_t wait_for_work(uhlm_pool *p, uint32_t seen) {
    uint32_t g;
    if (p->spin_ns > 0) {
        long long t0 = now_ns();
        for (int i = 1;; i++) {
            g = (uint32_t)(atomic_load_explicit(&p->work, memory_order_acquire) >> 32);
            if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
            CPU_RELAX();
            if (i % SPIN_CHECK == 0 && now_ns() - t0 > p->spin_ns) break;
        }
    }
    pthread_mutex_lock(&p->mu);
    /* seq_cst increment before re-reading work pairs with the caller's seq_cst store of work
     * followed by its read of work_sleepers: one side sees the other, no wakeup is lost. */
    atomic_fetch_add(&p->work_sleepers, 1);
    while ((g = (uint32_t)(atomic_load(&p->work) >> 32)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv_work, &p->mu);
    atomic_fetch_sub(&p->work_sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *varg) {
    worker_arg *wa = varg;
    uhlm_pool *p = wa->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = wait_for_work(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        seen = g;
        (void)run_chunks(p, g, wa->tid);
    }
    return NULL;
}

static void wait_for_done(uhlm_pool *p, int64_t n) {
    if (atomic_load_explicit(&p->done, memory_order_acquire) == n) return;
    if (p->spin_ns > 0) {
        long long t0 = now_ns();
        for (int i = 1;; i++) {
            if (atomic_load_explicit(&p->done, memory_order_acquire) == n) return;
            CPU_RELAX();
            if (i % SPIN_CHECK == 0 && now_ns() - t0 > p->spin_ns) break;
        }
    }
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->done) != n) pthread_cond_wait(&p->cv_done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

static void shutdown_workers(uhlm_pool *p) {
    if (p->n_workers > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
        p->n_workers = 0;
    }
}

void uhlm_pool_free(uhlm_pool *p) {
    if (!p) return;
    shutdown_workers(p);
    if (p->cv_done_ok) pthread_cond_destroy(&p->cv_done);
    if (p->cv_work_ok) pthread_cond_destroy(&p->cv_work);
    if (p->mu_ok) pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->args);
    free(p);
}

uhlm_pool *uhlm_pool_new(int n_threads, uhlm_error *err) {
    int ncpu = online_cpus();
    if (n_threads <= 0) n_threads = ncpu;
    if (n_threads > MAX_THREADS) {
        uhlm_set_error(err, "thread pool: %d threads requested, at most %d allowed", n_threads,
                       MAX_THREADS);
        return NULL;
    }
    uhlm_pool *p = calloc(1, sizeof *p);
    if (!p) {
        uhlm_set_error(err, "thread pool: out of memory");
        return NULL;
    }
    p->n_threads = n_threads;
    p->spin_ns = n_threads <= ncpu ? SPIN_NS : 0;
    atomic_init(&p->fn, NULL);
    atomic_init(&p->arg, NULL);
    atomic_init(&p->n, 0);
    atomic_init(&p->chunk, 1);
    atomic_init(&p->nchunks, 0);
    atomic_init(&p->work, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->work_sleepers, 0);
    atomic_init(&p->caller_sleeping, 0);
    atomic_init(&p->stop, 0);
    int rc;
    if ((rc = pthread_mutex_init(&p->mu, NULL)) != 0) goto fail_rc;
    p->mu_ok = 1;
    if ((rc = pthread_cond_init(&p->cv_work, NULL)) != 0) goto fail_rc;
    p->cv_work_ok = 1;
    if ((rc = pthread_cond_init(&p->cv_done, NULL)) != 0) goto fail_rc;
    p->cv_done_ok = 1;
    if (n_threads > 1) {
        size_t nw = (size_t)n_threads - 1;
        p->threads = calloc(nw, sizeof *p->threads);
        p->args = calloc(nw, sizeof *p->args);
        if (!p->threads || !p->args) {
            uhlm_pool_free(p);
            uhlm_set_error(err, "thread pool: out of memory");
            return NULL;
        }
        for (size_t i = 0; i < nw; i++) {
            p->args[i].pool = p;
            p->args[i].tid = (int)i + 1;
            rc = pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]);
            if (rc != 0) goto fail_rc;
            p->n_workers++;
        }
    }
    return p;
fail_rc:
    uhlm_set_error(err, "thread pool: cannot set up %d threads: %s", n_threads, strerror(rc));
    uhlm_pool_free(p);
    return NULL;
}

int uhlm_pool_size(const uhlm_pool *p) { return p ? p->n_threads : 1; }

uhlm_pool_stats uhlm_pool_get_stats(const uhlm_pool *p) {
    uhlm_pool_stats s = {0, 0, 0};
    return p ? p->stats : s;
}

void uhlm_pool_run(uhlm_pool *p, uhlm_task_fn fn, void *arg, int64_t n, int64_t grain) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* Too little work to be worth a wakeup: run it here. */
    if (!p || p->n_workers == 0 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    if (p->solo_until_ns) {
        if (now_ns() < p->solo_until_ns) {
            p->stats.solo_runs++;
            fn(arg, 0, n, 0);
            return;
        }
        p->solo_until_ns = 0;
    }
    const long long t0 = now_ns();
    /* A few chunks per thread balance load when one thread is slow to start, without making
     * the claim word a hot spot. The chunk count stays far below 2^32. */
    int64_t per = n / ((int64_t)p->n_threads * 4);
    int64_t chunk = per > grain ? per : grain;
    if ((n - 1) / chunk >= (int64_t)(CLAIM_CLOSED >> 1)) chunk = n / (int64_t)(CLAIM_CLOSED >> 1) + 1;
    /* Close the previous job's claim word before touching the fields. Without this a worker
     * that read the word of the finished job (all chunks claimed, c == its nchunks) and then
     * the new, larger nchunks could win a CAS on the stale word, run a chunk that does not
     * exist and add it to the new job's `done`, which then overshoots n: the caller waited
     * for done == n forever (seen as a rare hang under load). */
    atomic_store_explicit(&p->work, ((uint64_t)p->gen << 32) | CLAIM_CLOSED, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    p->gen++;
    if (p->gen == 0) p->gen = 1; /* workers start out having seen generation 0 */
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->n, n, memory_order_relaxed);
    atomic_store_explicit(&p->chunk, chunk, memory_order_relaxed);
    atomic_store_explicit(&p->nchunks, (n + chunk - 1) / chunk, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    /* seq_cst: publishes the job (release) and orders it before the sleeper check. */
    atomic_store(&p->work, (uint64_t)p->gen << 32);
    if (atomic_load(&p->work_sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    const int64_t mine = run_chunks(p, p->gen, 0);
    const long long t1 = now_ns();
    wait_for_done(p, n);
    p->stats.parallel_runs++;
    /* with no chunk of its own the caller has no measure of a chunk's time: not judged */
    if (mine == 0) return;
    const long long waited = now_ns() - t1;
    if (waited > STALL_FACTOR * ((t1 - t0) / mine) + STALL_MIN_NS) {
        p->stats.stalls++;
        p->clean_runs = 0;
        if (p->solo_ns < SOLO_FIRST_NS) p->solo_ns = SOLO_FIRST_NS;
        p->solo_until_ns = t1 + waited + p->solo_ns;
        p->solo_ns = p->solo_ns * 2 > SOLO_MAX_NS ? SOLO_MAX_NS : p->solo_ns * 2;
    } else if (++p->clean_runs >= CLEAN_RESET) {
        p->solo_ns = SOLO_FIRST_NS;
        p->clean_runs = 0;
    }
}
