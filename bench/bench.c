/* bench.c: `uhlm bench`, prompt and decode speed of models against the memory-bandwidth bound.
 *
 * Decoding one token streams every weight once, so on a CPU its speed is bounded by
 * bandwidth / weight bytes. The bandwidth is measured in the same run on the same threads, so
 * the reported fraction compares like with like on a noisy shared machine. The cache size the
 * OS reports is not trusted (VMs report the host's): a read-only sweep over sizes doubling from
 * 1 MiB gives the curve whose plateau is the memory bandwidth and whose fall shows the cache
 * actually seen. The bound is that read plateau, since decoding only reads its weights; a
 * STREAM-like triad over arrays four times the measured cache is reported beside it. Models
 * within the measured cache are flagged: for them the DRAM bound does not apply. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"
#include "model/threadpool.h"

typedef struct {
    float *a;
    const float *b, *c;
    float s;
} triad_job;

static void triad_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    triad_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->a[i] = j->b[i] + j->s * j->c[i];
}

typedef struct {
    const float *b;
    double *sums; /* one per thread, a cache line apart */
} read_job;

static void read_task(void *arg, int64_t begin, int64_t end, int tid) {
    read_job *j = arg;
    /* eight independent accumulators so the loop is bound by loads, not by the add latency */
    float acc[8] = {0};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += j->b[i + k];
    for (; i < end; i++) acc[0] += j->b[i];
    double s = 0;
    for (int k = 0; k < 8; k++) s += acc[k];
    j->sums[(size_t)tid * 8] += s;
}

typedef struct {
    double triad; /* bytes/s, counting 3 arrays per pass like STREAM (write-allocate not counted) */
    double read;  /* bytes/s of a read-only sweep, the access pattern of decoding */
} bandwidth;

typedef struct {
    float *a, *b, *c;
    double *sums;
    int64_t bytes; /* per array, as used by bw_measure */
    int64_t cap;   /* bytes allocated per array */
} bw_arrays;

static void bw_free(bw_arrays *w) {
    free(w->a);
    free(w->b);
    free(w->c);
    free(w->sums);
    memset(w, 0, sizeof *w);
}

/* The largest sweep of the read curve, and of each array. The OS-reported last-level cache is
 * not trusted (this VM reports 320 MiB where the measured curve falls at 32 MiB), so the arrays
 * are allocated at this size and the curve decides how much of them the triad uses. */
#define BW_MAX_BYTES ((int64_t)512 << 20)
#define BW_MIN_BYTES ((int64_t)64 << 20)
#define CURVE_FIRST ((int64_t)1 << 20)

/* The arrays ask for transparent huge pages, as the loader does for the weights it copies
 * (uhlm_load_mode): with 4 KiB pages a one-core read of this VM measured about 29 GB/s, under
 * what a decode over huge-page weights streams, and the bound would not be one. NULL on
 * failure; free() releases it. */
static float *bw_array(int64_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, (size_t)bytes) != 0) return NULL;
    (void)madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* advice: 4 KiB pages still work */
    return p;
}

static int bw_alloc(bw_arrays *w, int n_threads) {
    memset(w, 0, sizeof *w);
    int64_t bytes = BW_MAX_BYTES;
    for (; bytes >= BW_MIN_BYTES; bytes /= 2) {
        w->a = bw_array(bytes);
        w->b = bw_array(bytes);
        w->c = bw_array(bytes);
        if (w->a && w->b && w->c) break;
        bw_free(w);
    }
    w->sums = calloc((size_t)n_threads * 8, sizeof(double));
    if (!w->a || !w->sums) {
        bw_free(w);
        return -1;
    }
    w->bytes = w->cap = bytes;
    /* only b now (the read curve sweeps it); a and c up to the size the curve picks, so
     * untouched pages of them cost no memory */
    const int64_t n = bytes / (int64_t)sizeof(float);
    for (int64_t i = 0; i < n; i++) w->b[i] = 1.0f;
    return 0;
}

static void bw_init_triad(bw_arrays *w) {
    const int64_t n = w->bytes / (int64_t)sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        w->a[i] = 0.0f;
        w->c[i] = 2.0f;
    }
}

/* Read bandwidth of the first `bytes` of b: a warm-up sweep, then the best of sweeps adding
 * up to at least 3 x 64 MiB, so small sizes are timed over many passes. */
static double read_bw_at(uhlm_pool *pool, bw_arrays *w, int64_t bytes) {
    read_job rj = {w->b, w->sums};
    const int64_t n = bytes / (int64_t)sizeof(float);
    int passes = (int)(((int64_t)64 << 20) / bytes);
    if (passes < 1) passes = 1;
    uhlm_pool_run(pool, read_task, &rj, n, 65536);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t = uhlm_now();
        for (int k = 0; k < passes; k++) uhlm_pool_run(pool, read_task, &rj, n, 65536);
        t = uhlm_now() - t;
        const double bw = (double)bytes * passes / t;
        if (bw > best) best = bw;
    }
    return best;
}

#define CURVE_MAX 16

typedef struct {
    int n;
    int64_t bytes[CURVE_MAX];
    double bw[CURVE_MAX];
    double plateau;      /* read bytes/s from memory: the mean of the two largest sizes */
    int64_t cache_bytes; /* sizes up to this one all read at >= 1.25x the plateau (0: none) */
} bw_curve;

/* The read bandwidth over sizes doubling from 1 MiB to the arrays' size. Where it flattens
 * out is the memory bandwidth; the largest size still read clearly faster is the cache that
 * the process actually sees, whatever the OS reports. */
static bw_curve bw_measure_curve(uhlm_pool *pool, bw_arrays *w) {
    bw_curve c;
    memset(&c, 0, sizeof c);
    for (int64_t s = CURVE_FIRST; s <= w->cap && c.n < CURVE_MAX; s *= 2) {
        c.bytes[c.n] = s;
        c.bw[c.n] = read_bw_at(pool, w, s);
        c.n++;
    }
    c.plateau = c.n >= 2 ? (c.bw[c.n - 1] + c.bw[c.n - 2]) / 2 : c.bw[0];
    /* up to the first size that falls below the threshold: on a shared host a larger size
     * can read fast again when other load pauses, which is not a cache */
    for (int i = 0; i < c.n && c.bw[i] >= 1.25 * c.plateau; i++) c.cache_bytes = c.bytes[i];
    /* the triad streams arrays of at least 4x that cache, so the cache holds a quarter of
     * them at most; with the cache measured as large as the arrays it keeps the full size */
    int64_t want = 4 * c.cache_bytes;
    if (want < BW_MIN_BYTES) want = BW_MIN_BYTES;
    w->bytes = want < w->cap ? want : w->cap;
    bw_init_triad(w);
    return c;
}

/* Best-of-reps bandwidths over w->bytes per array. */
static bandwidth bw_measure(uhlm_pool *pool, bw_arrays *w, int reps) {
    bandwidth out = {0, 0};
    int64_t n = w->bytes / (int64_t)sizeof(float);
    triad_job j = {w->a, w->b, w->c, 3.0f};
    read_job rj = {w->b, w->sums};
    for (int r = 0; r < reps; r++) {
        double t = uhlm_now();
        uhlm_pool_run(pool, triad_task, &j, n, 65536);
        t = uhlm_now() - t;
        double bw = 3.0 * (double)w->bytes / t;
        if (bw > out.triad) out.triad = bw;
        t = uhlm_now();
        uhlm_pool_run(pool, read_task, &rj, n, 65536);
        t = uhlm_now() - t;
        bw = (double)w->bytes / t;
        if (bw > out.read) out.read = bw;
    }
    return out;
}

/* What every model is compared against, measured once per run before the first model. */
typedef struct {
    bw_arrays bwa;
    bw_curve curve;
    bandwidth bwm;
    long llc_reported;
} bw_env;

static int measure_bw_env(uhlm_pool *pool, bw_env *env) {
    fprintf(stderr, "uhlm bench: measuring memory bandwidth (triad and read, %d threads)...\n",
            uhlm_pool_size(pool));
    if (bw_alloc(&env->bwa, uhlm_pool_size(pool)) != 0) {
        fprintf(stderr, "uhlm bench: out of memory for the bandwidth arrays\n");
        return -1;
    }
    env->curve = bw_measure_curve(pool, &env->bwa);
    env->bwm = bw_measure(pool, &env->bwa, 5);
    env->llc_reported = sysconf(_SC_LEVEL3_CACHE_SIZE);
    const bw_curve *curve = &env->curve;
    fprintf(stderr, "uhlm bench: read curve (MiB: GB/s):");
    for (int i = 0; i < curve->n; i++)
        fprintf(stderr, " %lld: %.1f", (long long)(curve->bytes[i] >> 20), curve->bw[i] / 1e9);
    if (curve->cache_bytes > 0)
        fprintf(stderr,
                "\nuhlm bench: memory read plateau %.2f GB/s, cache seen %.0f MiB (OS reports "
                "%.0f MiB)\n",
                curve->plateau / 1e9, curve->cache_bytes / 1048576.0,
                env->llc_reported / 1048576.0);
    else /* one core's own load rate can be the limit, cache or not */
        fprintf(stderr,
                "\nuhlm bench: memory read plateau %.2f GB/s; no size read 1.25x faster on "
                "these threads, so no cache counts as faster (OS reports %.0f MiB)\n",
                curve->plateau / 1e9, env->llc_reported / 1048576.0);
    fprintf(stderr, "uhlm bench: triad %.2f GB/s, read %.2f GB/s (arrays %.0f MiB)\n",
            env->bwm.triad / 1e9, env->bwm.read / 1e9, env->bwa.bytes / 1048576.0);
    return 0;
}

/* Best-of-reps seconds of one prefill and of the decode steps, and the best paired fraction
 * of the read bound measured next to each rep. */
typedef struct {
    double prompt_s, decode_s, frac_paired;
} decode_timing;

static decode_timing time_decode(const bench_decode_params *p, uhlm_pool *pool, bw_arrays *bwa,
                                 uhlm_model *m, uhlm_ctx *ctx, uhlm_batch_entry *b, float *logits,
                                 uhlm_error *err) {
    const long n_prompt = p->n_prompt, n_gen = p->n_gen, reps = p->reps;
    const int V = uhlm_model_config(m)->vocab_size;
    uhlm_rng rng;
    uhlm_rng_seed(&rng, 1);
    double best_p = 1e30, best_d = 1e30, best_frac = 0;
    for (int r = 0; r < reps; r++) {
        /* The machine is shared: a read over arrays four times the measured cache is re-run
         * right before each decode so that each rep's fraction divides speeds seen under the
         * same load. */
        const bandwidth near = bw_measure(pool, bwa, 1);
        uhlm_seq_truncate(ctx, 0, 0, NULL);
        for (int i = 0; i < n_prompt; i++)
            b[i] = (uhlm_batch_entry){0, i, (int)(uhlm_rng_u64(&rng) % (uint64_t)V), i == n_prompt - 1};
        double t = uhlm_now();
        if (uhlm_decode(ctx, b, (int)n_prompt, logits, NULL, err) != 0) break;
        t = uhlm_now() - t;
        if (t < best_p) best_p = t;
        /* only the forward is timed: the greedy pick (a scan of V logits, a tenth of a
         * small model's step) is the caller's, and llama.cpp's figures do not include it */
        t = 0;
        for (int g = 0; g < n_gen; g++) {
            uhlm_batch_entry e = {0, (int)n_prompt + g, uhlm_argmax(logits, V), 1};
            const double t0 = uhlm_now();
            if (uhlm_decode(ctx, &e, 1, logits, NULL, err) != 0) break;
            t += uhlm_now() - t0;
        }
        if (t < best_d) best_d = t;
        const double frac = (n_gen / t) * (double)uhlm_model_weight_bytes(m) / near.read;
        if (frac > best_frac) best_frac = frac;
    }
    return (decode_timing){best_p, best_d, best_frac};
}

/* One model's JSON object or table row. */
static void report_model(const bench_decode_params *p, bench_report *rep, const bw_env *env,
                         const char *mpath, const uhlm_model *m, const uhlm_ctx *ctx,
                         const decode_timing *tm, double read_at_size) {
    const long threads = p->threads, n_prompt = p->n_prompt, n_gen = p->n_gen;
    const bw_curve *curve = &env->curve;
    /* the bound: the read plateau of the curve (decoding reads its weights, writes nearly
     * nothing) */
    const double bw = curve->plateau;
    double wbytes = (double)uhlm_model_weight_bytes(m);
    double ptps = n_prompt / tm->prompt_s, dtps = n_gen / tm->decode_s, bound = bw / wbytes;
    const char *name = strrchr(mpath, '/') ? strrchr(mpath, '/') + 1 : mpath;
    const uhlm_ctx_thread_stats st = uhlm_ctx_thread_stats_get(ctx);
    if (st.stalls > 0)
        fprintf(stderr,
                "uhlm bench: %s: %lld stalls waiting for a descheduled thread, %lld of %lld "
                "loops then run by one thread (another process held a core)\n",
                name, (long long)st.stalls, (long long)st.solo_runs,
                (long long)(st.solo_runs + st.parallel_runs));
    if (p->format != BENCH_TABLE) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", name);
        cJSON_AddStringToObject(o, "format", uhlm_format_name(uhlm_model_format(m)));
        cJSON_AddStringToObject(o, "weight_type", uhlm_type_name(uhlm_model_weight_type(m)));
        cJSON_AddBoolToObject(o, "synthetic", uhlm_model_is_synthetic(m));
        cJSON_AddStringToObject(o, "simd", uhlm_simd_name(uhlm_ctx_simd(ctx)));
        cJSON_AddNumberToObject(o, "threads", threads);
        cJSON_AddNumberToObject(o, "weight_bytes_per_token", wbytes);
        cJSON_AddNumberToObject(o, "prompt_tokens", n_prompt);
        cJSON_AddNumberToObject(o, "prompt_tokens_per_s", ptps);
        cJSON_AddNumberToObject(o, "decode_tokens", n_gen);
        cJSON_AddNumberToObject(o, "decode_tokens_per_s", dtps);
        cJSON_AddNumberToObject(o, "bandwidth_bytes_per_s", bw);
        cJSON_AddNumberToObject(o, "bound_tokens_per_s", bound);
        cJSON_AddNumberToObject(o, "fraction_of_bound", dtps / bound);
        cJSON_AddNumberToObject(o, "fraction_of_bound_paired", tm->frac_paired);
        cJSON_AddStringToObject(o, "bound_basis", "read_plateau");
        cJSON_AddNumberToObject(o, "triad_bytes_per_s", env->bwm.triad);
        cJSON_AddNumberToObject(o, "fraction_of_triad", dtps * wbytes / env->bwm.triad);
        cJSON_AddNumberToObject(o, "read_bandwidth_bytes_per_s", env->bwm.read);
        cJSON_AddNumberToObject(o, "fraction_of_read_bound", dtps * wbytes / env->bwm.read);
        cJSON_AddNumberToObject(o, "read_plateau_bytes_per_s", curve->plateau);
        cJSON_AddNumberToObject(o, "fraction_of_read_plateau", dtps * wbytes / curve->plateau);
        cJSON_AddNumberToObject(o, "read_at_weight_size_bytes_per_s", read_at_size);
        cJSON_AddNumberToObject(o, "fraction_of_read_at_weight_size",
                                dtps * wbytes / read_at_size);
        cJSON_AddNumberToObject(o, "cache_bytes_measured", (double)curve->cache_bytes);
        cJSON_AddNumberToObject(o, "llc_bytes_reported", (double)env->llc_reported);
        /* weights within the cache the read curve shows can beat the DRAM bound */
        cJSON_AddBoolToObject(o, "weights_fit_in_llc", wbytes <= (double)curve->cache_bytes);
        /* after decoding, so a mapped file's pages are all in: how the weights were held */
        cJSON_AddStringToObject(o, "weights_memory",
                                uhlm_load_mode_name(uhlm_model_load_mode(m)));
        cJSON_AddNumberToObject(o, "huge_page_bytes", (double)uhlm_model_huge_bytes(m));
        cJSON_AddNumberToObject(o, "file_bytes", (double)uhlm_model_file_bytes(m));
        cJSON_AddNumberToObject(o, "thread_parallel_runs", (double)st.parallel_runs);
        cJSON_AddNumberToObject(o, "thread_stalls", (double)st.stalls);
        cJSON_AddNumberToObject(o, "thread_solo_runs", (double)st.solo_runs);
        bench_report_add(rep, o);
    } else {
        /* "copy 100%": copied, all of it in huge pages; "mmap 17%": mapped, 17% of it */
        char mem[32];
        const int64_t huge = uhlm_model_huge_bytes(m);
        if (huge >= 0)
            snprintf(mem, sizeof mem, "%s %.0f%%", uhlm_load_mode_name(uhlm_model_load_mode(m)),
                     100.0 * (double)huge / (double)uhlm_model_file_bytes(m));
        else
            snprintf(mem, sizeof mem, "%s", uhlm_load_mode_name(uhlm_model_load_mode(m)));
        printf("%-28s %-6s %-7s %8.2f %10.1f %10.1f %9.1f %9.2f %6.1f%% %6.1f%% %7.1f%% %7s %-9s\n",
               name, uhlm_type_name(uhlm_model_weight_type(m)), uhlm_simd_name(uhlm_ctx_simd(ctx)),
               wbytes / 1e6, ptps, dtps, bound, bw / 1e9, 100.0 * dtps / bound,
               100.0 * tm->frac_paired, 100.0 * dtps * wbytes / read_at_size,
               wbytes <= (double)curve->cache_bytes ? "yes" : "no", mem);
    }
    fflush(stdout);
}

/* Load, time and report one model: 0, or 1 after saying on stderr why it was skipped. */
static int bench_model(const bench_decode_params *p, uhlm_pool *pool, bw_env *env,
                       bench_report *rep, const char *mpath) {
    const long n_prompt = p->n_prompt, n_gen = p->n_gen;
    uhlm_error err = {{0}};
    uhlm_model_params mp = uhlm_model_default_params();
    mp.load = p->load;
    uhlm_model *m = uhlm_model_load_params(mpath, NULL, &mp, &err);
    if (!m) {
        fprintf(stderr, "uhlm bench: %s\n", err.msg);
        return 1;
    }
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)p->threads;
    cp.simd = p->simd;
    cp.max_batch = (int)n_prompt < 512 ? (int)n_prompt : 512;
    int n_ctx = uhlm_model_config(m)->seq_len;
    if (n_prompt + n_gen > n_ctx) {
        fprintf(stderr, "uhlm bench: %s: --prompt + --gen exceeds the context %d\n", mpath,
                n_ctx);
        uhlm_model_free(m);
        return 1;
    }
    uhlm_ctx *ctx = uhlm_ctx_new(m, &cp, &err);
    int V = uhlm_model_config(m)->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)V * 1);
    uhlm_batch_entry *b = malloc(sizeof(uhlm_batch_entry) * (size_t)n_prompt);
    if (!ctx || !logits || !b) {
        fprintf(stderr, "uhlm bench: %s\n", ctx ? "out of memory" : err.msg);
        free(logits);
        free(b);
        uhlm_ctx_free(ctx);
        uhlm_model_free(m);
        return 1;
    }
    const decode_timing tm = time_decode(p, pool, &env->bwa, m, ctx, b, logits, &err);
    double wbytes = (double)uhlm_model_weight_bytes(m);
    /* reading exactly as many bytes as a token does, in a plain loop: the bound that
     * holds whether or not they fit in a cache */
    const int64_t wb64 = (int64_t)wbytes / 64 * 64;
    const double read_at_size = wb64 >= 64 && wb64 <= env->bwa.cap
                                    ? read_bw_at(pool, &env->bwa, wb64)
                                    : env->curve.plateau;
    report_model(p, rep, env, mpath, m, ctx, &tm, read_at_size);
    free(logits);
    free(b);
    uhlm_ctx_free(ctx);
    uhlm_model_free(m);
    return 0;
}

int bench_decode(const bench_decode_params *p) {
    /* fail before the bandwidth measurement, which takes seconds */
    for (int mi = 0; mi < p->n_models; mi++) {
        const char *mpath = p->models[mi];
        if (access(mpath, R_OK) != 0) {
            fprintf(stderr, "uhlm bench: %s: cannot open: %s\n", mpath, strerror(errno));
            return 1;
        }
    }
    uhlm_error err = {{0}};
    uhlm_pool *pool = uhlm_pool_new((int)p->threads, &err);
    if (!pool) {
        fprintf(stderr, "uhlm bench: %s\n", err.msg);
        return 1;
    }
    bw_env env;
    if (measure_bw_env(pool, &env) != 0) {
        uhlm_pool_free(pool);
        return 1;
    }
    if (p->format == BENCH_TABLE)
        printf("%-28s %-6s %-7s %8s %10s %10s %9s %9s %7s %7s %8s %7s %-9s\n", "model", "type",
               "simd", "MB/tok", "prompt t/s", "decode t/s", "bound t/s", "rd GB/s", "of bw",
               "paired", "of rd@sz", "cached", "memory");
    int rc = 0;
    bench_report rep;
    bench_report_init(&rep, "decode", p->format);
    for (int mi = 0; mi < p->n_models; mi++)
        if (bench_model(p, pool, &env, &rep, p->models[mi]) != 0) rc = 1;
    if (bench_report_end(&rep) != 0) rc = 1;
    bw_free(&env.bwa);
    uhlm_pool_free(pool);
    return rc;
}
