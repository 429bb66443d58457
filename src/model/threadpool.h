/* threadpool.h: a fixed pthread pool that runs one data-parallel loop at a time.
 *
 * Contract: uhlm_pool_run(pool, fn, arg, n, grain) calls fn(arg, begin, end, tid) over
 * disjoint ranges that cover [0, n) exactly once, on all pool threads (the caller's thread is
 * one of them), and returns when every range is done. A NULL pool runs fn(arg, 0, n, 0)
 * inline. Results must not depend on how [0, n) is split: kernels give each output element
 * to exactly one range, so outputs are identical for every thread count. A pool is used by
 * one caller at a time; each context owns its own. */
#ifndef UHLM_THREADPOOL_H
#define UHLM_THREADPOOL_H

#include <stdint.h>
#include "uhlm/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_pool uhlm_pool;
typedef void (*uhlm_task_fn)(void *arg, int64_t begin, int64_t end, int tid);

/* n_threads <= 0 means the number of online CPUs. */
uhlm_pool *uhlm_pool_new(int n_threads, uhlm_error *err);
void uhlm_pool_free(uhlm_pool *pool);
int uhlm_pool_size(const uhlm_pool *pool);
/* grain: the smallest range worth handing to a thread (>= 1). After a run in which the caller
 * waited far longer for a descheduled worker than its own ranges took (a "stall"), runs go on
 * inline on the caller's thread for a back-off period (2 ms, doubling to 128 ms while stalls
 * recur); see threadpool.c. */
void uhlm_pool_run(uhlm_pool *pool, uhlm_task_fn fn, void *arg, int64_t n, int64_t grain);

/* Counters since the pool was made: runs handed to the threads, stalls seen in them, and runs
 * done inline because of a stall. Caller's thread only, like uhlm_pool_run. */
typedef struct uhlm_pool_stats {
    int64_t parallel_runs, stalls, solo_runs;
} uhlm_pool_stats;
uhlm_pool_stats uhlm_pool_get_stats(const uhlm_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
