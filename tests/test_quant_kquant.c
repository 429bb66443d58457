/* test_quant_kquant.c: the K-quant types (Q2_K .. Q6_K) against llama.cpp itself and the
 * matmul kernels against each other and a double reference.
 *
 * Fixtures (tests/fixtures/kquant/, written by scripts/make_quant_fixtures_kquant.py from
 * llama.cpp 0.3.36's libggml and gguf-py 0.19.0):
 *   - quantization: uhlm_quantize_row on real SmolLM2 weight rows and awkward synthetic rows
 *     gives exactly the bytes of ggml_quantize_chunk (no importance matrix);
 *   - dequantization: gguf.quants' floats, bit for bit, on random blocks and on those rows;
 *   - Q8_K activations: exactly ggml's quantize_row_q8_K.
 * Kernels: every SIMD level gives the same bits as the scalar kernel (kquant.h fixes the
 * arithmetic: exact integer sums per block, then the same float steps), so the tolerance
 * between levels is zero; the scalar kernel is checked against a double-precision dot of the
 * dequantized weights and the dequantized Q8_K activations (a few float roundings per block)
 * and loosely against the float activations. Odd shapes, n = 1..9, pools of 1 and 2 threads,
 * rows alone vs in a batch, and uhlm_matmul_multi vs single calls: all bit-identical. */
#include <stdint.h>

#include "check.h"
#include "model/kernels/kquant.h"
#include "model/kernels/quant.h"
#include "model/threadpool.h"

static const uhlm_type ktypes[5] = {UHLM_TYPE_Q2_K, UHLM_TYPE_Q3_K, UHLM_TYPE_Q4_K,
                                    UHLM_TYPE_Q5_K, UHLM_TYPE_Q6_K};
static const uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};

#define FIX_COLS 1536

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static const char *source_path(const char *rel) {
    static char buf[4][1024];
    static int slot;
    char *out = buf[slot++ & 3];
    const char *src = getenv("UHLM_SOURCE_DIR");
    const char *cands[3] = {src, ".", ".."};
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        snprintf(out, 1024, "%s/%s", cands[i], rel);
        if (access(out, R_OK) == 0) return out;
    }
    snprintf(out, 1024, "%s", rel);
    return out;
}

/* Whole fixture file; NULL (and a failed check) if missing. */
static void *fixture(const char *name, size_t *len) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/kquant/%s", name);
    const char *path = source_path(rel);
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open fixture %s", path);
    if (!f) return NULL;
    void *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    CHECKF(buf != NULL, "cannot read fixture %s", path);
    if (buf) *len = (size_t)n;
    return buf;
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* ---------------------------------------------------------------- types */

static void test_types(void) {
    static const char *names[5] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    static const size_t bytes[5] = {84, 110, 144, 176, 210};
    for (int k = 0; k < 5; k++) {
        uhlm_type t;
        CHECK(!strcmp(uhlm_type_name(ktypes[k]), names[k]));
        CHECK(uhlm_type_from_name(names[k], &t) == 0 && t == ktypes[k]);
        CHECK(uhlm_type_block(ktypes[k]) == 256);
        CHECK(uhlm_type_bytes(ktypes[k], 512) == 2 * bytes[k]);
        CHECK(uhlm_type_is_gguf(10 + k));
        uhlm_tensor w = {ktypes[k], 3, 768, NULL, NULL, 0};
        CHECK(uhlm_tensor_nbytes(&w) == 9 * bytes[k]);
        CHECK(uhlm_matmul_scratch(&w, 5) >= 15 * sizeof(uhlm_block_q8_K));
    }
    uhlm_type t;
    CHECK(uhlm_type_from_name("Q4_K", &t) == 0 && t == UHLM_TYPE_Q4_K);
    CHECK(uhlm_type_from_name("q8_k", &t) != 0); /* activation-only */
    CHECK(!uhlm_type_is_gguf(15) && !uhlm_type_is_gguf(9) && !uhlm_type_is_gguf(16));
    /* rows that are not a multiple of 256: llama.cpp's fallbacks (llama-quant.cpp) */
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q4_K, 768) == UHLM_TYPE_Q4_K);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q4_K, 288) == UHLM_TYPE_Q5_0);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q5_K, 576) == UHLM_TYPE_Q5_1);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q4_K, 100) == UHLM_TYPE_F32);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q6_K, 192) == UHLM_TYPE_Q8_0);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q2_K, 192) == UHLM_TYPE_Q4_0);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q3_K, 160) == UHLM_TYPE_Q4_0);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q6_K, 172) == UHLM_TYPE_F32);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q4_0, 172) == UHLM_TYPE_F32);
    CHECK(uhlm_type_fallback(UHLM_TYPE_Q8_0, 64) == UHLM_TYPE_Q8_0);
    CHECK(uhlm_type_fallback(UHLM_TYPE_F16, 7) == UHLM_TYPE_F16);
}

/* ---------------------------------------------------------------- against llama.cpp */

static int same_bits(const float *a, const float *b, size_t n, size_t *first) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x, y;
        memcpy(&x, &a[i], 4);
        memcpy(&y, &b[i], 4);
        if (x != y) {
            if (first) *first = i;
            return 0;
        }
    }
    return 1;
}

static void test_dequant_random(void) {
    for (int k = 0; k < 5; k++) {
        const char *nm = uhlm_type_name(ktypes[k]);
        char f1[64], f2[64];
        snprintf(f1, sizeof f1, "%s_rand.bin", nm);
        snprintf(f2, sizeof f2, "%s_rand.f32", nm);
        size_t nq = 0, nf = 0;
        uint8_t *q = fixture(f1, &nq);
        float *want = fixture(f2, &nf);
        if (q && want) {
            const int64_t n = (int64_t)(nf / 4);
            CHECKF(uhlm_type_bytes(ktypes[k], n) == nq, "%s: fixture sizes disagree", nm);
            float *got = malloc(nf);
            if (got && uhlm_type_bytes(ktypes[k], n) == nq) {
                uhlm_dequantize_row(ktypes[k], q, got, n);
                size_t at = 0;
                CHECKF(same_bits(got, want, (size_t)n, &at),
                       "%s: random block dequantization differs from gguf.quants at %zu: %.9g vs %.9g",
                       nm, at, got[at], want[at]);
            }
            free(got);
        }
        free(q);
        free(want);
    }
}

/* Parses "name hash" lines. */
static uint64_t want_hash(const char *text, const char *name) {
    const char *p = text;
    size_t nl = strlen(name);
    while (p && *p) {
        if (!strncmp(p, name, nl) && p[nl] == ' ') return strtoull(p + nl + 1, NULL, 16);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

static void test_quantize_vs_ggml(void) {
    size_t ns = 0, nh = 0;
    float *src = fixture("src.f32", &ns);
    char *hashes = fixture("deq_hash.txt", &nh);
    if (!src || !hashes) goto out;
    hashes[nh] = '\0';
    const int64_t rows = (int64_t)(ns / 4 / FIX_COLS);
    CHECK(rows * FIX_COLS * 4 == (int64_t)ns && rows >= 8);
    for (int k = 0; k < 5; k++) {
        const char *nm = uhlm_type_name(ktypes[k]);
        char fn[64];
        snprintf(fn, sizeof fn, "%s.bin", nm);
        size_t nq = 0;
        uint8_t *want = fixture(fn, &nq);
        const size_t rb = uhlm_type_bytes(ktypes[k], FIX_COLS), bb = rb / (FIX_COLS / 256);
        uint8_t *got = malloc(rb * (size_t)rows);
        float *deq = malloc(ns);
        if (want && got && deq && nq == rb * (size_t)rows) {
            for (int64_t r = 0; r < rows; r++)
                uhlm_quantize_row(ktypes[k], src + r * FIX_COLS, got + (size_t)r * rb, FIX_COLS);
            int bad = 0, first = -1;
            for (size_t b = 0; b < nq / bb; b++)
                if (memcmp(got + b * bb, want + b * bb, bb) != 0) {
                    if (first < 0) first = (int)b;
                    bad++;
                }
            CHECKF(bad == 0, "%s: %d of %zu blocks differ from ggml_quantize_chunk (first: block %d, row %d)",
                   nm, bad, nq / bb, first, first / (FIX_COLS / 256));
            /* dequantize llama.cpp's bytes and ours: gguf.quants' floats */
            for (int64_t r = 0; r < rows; r++)
                uhlm_dequantize_row(ktypes[k], want + (size_t)r * rb, deq + r * FIX_COLS, FIX_COLS);
            CHECKF(fnv1a(deq, ns) == want_hash(hashes, nm),
                   "%s: dequantized real blocks differ from gguf.quants (hash %016llx)", nm,
                   (unsigned long long)fnv1a(deq, ns));
        } else {
            CHECKF(0, "%s: fixture missing or of the wrong size", nm);
        }
        free(want);
        free(got);
        free(deq);
    }
out:
    free(src);
    free(hashes);
}

static void test_q8_K_vs_ggml(void) {
    size_t ns = 0, nq = 0;
    float *src = fixture("src.f32", &ns);
    uint8_t *want = fixture("q8_k.bin", &nq);
    const int64_t nb = (int64_t)(ns / 4 / 256);
    uhlm_block_q8_K *got = malloc((size_t)nb * sizeof *got);
    if (src && want && got && nq == (size_t)nb * sizeof *got) {
        uhlm_kq_quantize_q8_K(src, got, nb);
        int bad = 0;
        for (int64_t b = 0; b < nb; b++) bad += memcmp(&got[b], want + b * sizeof *got, sizeof *got) != 0;
        CHECKF(bad == 0, "q8_K: %d of %lld blocks differ from ggml's quantize_row_q8_K", bad, (long long)nb);
    } else {
        CHECKF(0, "q8_k fixture missing or of the wrong size");
    }
    free(src);
    free(want);
    free(got);
}

/* Round trip: the relative RMS error of uniform data roughly halves with each extra bit
 * (measured 0.296, 0.154, 0.070, 0.035, 0.018); the bounds leave 10-15% of room. */
static void test_roundtrip_error(void) {
    static const double max_rel[5] = {0.33, 0.17, 0.08, 0.04, 0.02};
    const int64_t n = 4096;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *q = malloc(uhlm_type_bytes(UHLM_TYPE_Q6_K, n));
    if (!x || !y || !q) goto out;
    for (int64_t i = 0; i < n; i++) x[i] = frand() * (float)(1 + i % 5);
    for (int k = 0; k < 5; k++) {
        uhlm_quantize_row(ktypes[k], x, q, n);
        uhlm_dequantize_row(ktypes[k], q, y, n);
        double se = 0, sx = 0;
        for (int64_t i = 0; i < n; i++) {
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        const double rel = sqrt(se / sx);
        CHECKF(rel < max_rel[k], "%s: relative RMS error %.4f above %.3f", uhlm_type_name(ktypes[k]), rel, max_rel[k]);
    }
out:
    free(x);
    free(y);
    free(q);
}

/* ---------------------------------------------------------------- kernels */

typedef struct {
    uhlm_tensor W;
    uint8_t *data;
    float *deq;
} kt;

static void kt_free(kt *t) {
    free(t->data);
    free(t->deq);
}

/* Weights of type `type`: rows quantized from random floats (row magnitudes and offsets
 * vary), or when `raw`, random block bytes with fp16 scales kept small and finite. */
static int kt_make(kt *t, uhlm_type type, int64_t rows, int64_t cols, int raw) {
    memset(t, 0, sizeof *t);
    t->W.type = type;
    t->W.rows = rows;
    t->W.cols = cols;
    const size_t rb = uhlm_type_bytes(type, cols);
    t->data = malloc(rb * (size_t)rows);
    t->deq = malloc((size_t)rows * (size_t)cols * sizeof(float));
    float *src = malloc((size_t)cols * sizeof(float));
    if (!t->data || !t->deq || !src) {
        free(src);
        kt_free(t);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *dst = t->data + (size_t)r * rb;
        if (raw) {
            for (size_t i = 0; i < rb; i++) dst[i] = (uint8_t)rnd();
            const size_t bb = uhlm_kq_block_bytes(type);
            for (size_t b = 0; b < rb / bb; b++) {
                uint8_t *blk = dst + b * bb;
                /* d / dmin: |v| in [2^-14, 2^-6), random sign */
                uint16_t h1 = (uint16_t)(0x0400 + rnd() % 0x2000) | (uint16_t)((rnd() & 1) << 15);
                uint16_t h2 = (uint16_t)(0x0400 + rnd() % 0x2000) | (uint16_t)((rnd() & 1) << 15);
                switch ((int)type) {
                case UHLM_TYPE_Q2_K: memcpy(blk + 80, &h1, 2); memcpy(blk + 82, &h2, 2); break;
                case UHLM_TYPE_Q3_K: memcpy(blk + 108, &h1, 2); break;
                case UHLM_TYPE_Q6_K: memcpy(blk + 208, &h1, 2); break;
                default: memcpy(blk, &h1, 2); memcpy(blk + 2, &h2, 2); break;
                }
            }
        } else {
            const float scale = 0.05f * (float)(1 + r % 7), off = 0.01f * (float)(r % 3);
            for (int64_t j = 0; j < cols; j++) src[j] = frand() * scale + off;
            uhlm_quantize_row(type, src, dst, cols);
        }
        uhlm_dequantize_row(type, dst, t->deq + r * cols, cols);
    }
    t->W.data = t->data;
    free(src);
    return 0;
}

static void run_mm(uhlm_simd s, uhlm_pool *p, const uhlm_tensor *W, const float *X, int n, float *Y) {
    size_t ss = uhlm_matmul_scratch(W, n);
    void *scratch = malloc(ss);
    CHECK(scratch != NULL);
    if (!scratch) return;
    uhlm_matmul(s, p, W, X, n, Y, scratch);
    free(scratch);
}

/* Y against double references: the dequantized weights times the Q8_K-dequantized
 * activations (what the kernel computes: a few float roundings per block), and loosely the
 * float activations (unless `loose` is 0: an activation outlier makes Q8_K's step coarse). */
static int check_ref(const kt *t, const float *X, int n, const float *Y, const char *what, int loose) {
    const int64_t rows = t->W.rows, cols = t->W.cols, nb = cols / 256;
    uhlm_block_q8_K *xb = malloc((size_t)nb * sizeof *xb);
    float *xq = malloc((size_t)cols * sizeof *xq);
    if (!xb || !xq) {
        free(xb);
        free(xq);
        return 0;
    }
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)i * cols;
        uhlm_kq_quantize_q8_K(x, xb, nb);
        for (int64_t j = 0; j < cols; j++) xq[j] = xb[j / 256].d * (float)xb[j / 256].qs[j % 256];
        for (int64_t r = 0; r < rows; r++) {
            const float *w = t->deq + r * cols;
            double exact = 0, mag = 0, floose = 0, lmag = 0;
            for (int64_t j = 0; j < cols; j++) {
                exact += (double)w[j] * xq[j];
                mag += fabs((double)w[j] * xq[j]);
                floose += (double)w[j] * x[j];
                lmag += fabs((double)w[j] * x[j]);
            }
            const double y = Y[(size_t)i * rows + r], err = fabs(y - exact);
            /* the float steps per block: d and m products, two more, the accumulation; plus
             * dequantized weights that are themselves rounded (d*sc*q - dmin*m) */
            const double tol = 1e-5 * mag + 1e-30;
            if (err / (mag + 1e-30) > worst) worst = err / (mag + 1e-30);
            if (!(err <= tol)) bad++;
            if (loose && !(fabs(y - floose) <= 0.02 * lmag + 1e-30)) bad++;
        }
    }
    if (bad) fprintf(stderr, "%s: %d mismatches, worst relative error %.3g\n", what, bad, worst);
    free(xb);
    free(xq);
    return bad == 0;
}

static void test_kernels(void) {
    const int64_t shapes[][2] = {{1, 256}, {3, 512}, {4, 256}, {5, 768}, {7, 1280}, {13, 256},
                                 {37, 512}, {64, 1024}, {9, 2304}};
    uhlm_error err;
    uhlm_pool *pool = uhlm_pool_new(2, &err);
    CHECKF(pool != NULL, "%s", err.msg);
    for (int k = 0; k < 5; k++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            kt t;
            if (kt_make(&t, ktypes[k], rows, cols, si % 3 == 2) != 0) {
                CHECK(!"out of memory");
                continue;
            }
            float *X = malloc(9 * (size_t)cols * sizeof(float));
            float *Y0 = malloc(9 * (size_t)rows * sizeof(float));
            float *Y1 = malloc(9 * (size_t)rows * sizeof(float));
            CHECK(X && Y0 && Y1);
            if (X && Y0 && Y1) {
                for (size_t j = 0; j < 9 * (size_t)cols; j++) X[j] = frand() * (1.0f + (float)(j % 3));
                for (int n = 1; n <= 9; n++) {
                    char what[128];
                    snprintf(what, sizeof what, "%s scalar %lldx%lld n=%d", uhlm_type_name(ktypes[k]),
                             (long long)rows, (long long)cols, n);
                    run_mm(UHLM_SIMD_SCALAR, NULL, &t.W, X, n, Y0);
                    CHECKF(check_ref(&t, X, n, Y0, what, 1), "%s", what);
                    for (int li = 1; li < 3; li++) {
                        if (!uhlm_simd_supported(levels[li])) continue;
                        for (size_t j = 0; j < (size_t)n * rows; j++) Y1[j] = NAN;
                        run_mm(levels[li], (n & 1) ? pool : NULL, &t.W, X, n, Y1);
                        size_t at = 0;
                        CHECKF(same_bits(Y0, Y1, (size_t)n * rows, &at),
                               "%s %s %lldx%lld n=%d: differs from scalar at %zu: %.9g vs %.9g",
                               uhlm_type_name(ktypes[k]), uhlm_simd_name(levels[li]), (long long)rows,
                               (long long)cols, n, at, Y1[at], Y0[at]);
                    }
                }
            }
            free(X);
            free(Y0);
            free(Y1);
            kt_free(&t);
        }
    uhlm_pool_free(pool);
}

/* Real blocks: the fixture's rows quantized by ggml, as a weight matrix. */
static void test_kernels_real(void) {
    size_t ns = 0;
    float *src = fixture("src.f32", &ns);
    if (!src) return;
    const int64_t rows = (int64_t)(ns / 4 / FIX_COLS);
    for (int k = 0; k < 5; k++) {
        char fn[64];
        snprintf(fn, sizeof fn, "%s.bin", uhlm_type_name(ktypes[k]));
        size_t nq = 0;
        uint8_t *q = fixture(fn, &nq);
        kt t = {{ktypes[k], rows, FIX_COLS, q, NULL, 0}, q, malloc(ns)};
        float *X = malloc(4 * FIX_COLS * sizeof(float)), *Y0 = malloc(4 * (size_t)rows * sizeof(float));
        float *Y1 = malloc(4 * (size_t)rows * sizeof(float));
        if (q && t.deq && X && Y0 && Y1 && nq == uhlm_tensor_nbytes(&t.W)) {
            for (int64_t r = 0; r < rows; r++) uhlm_tensor_row(&t.W, r, t.deq + r * FIX_COLS);
            /* activations: real-looking rows (other weight rows), and one with an outlier */
            memcpy(X, src + 2 * FIX_COLS, 4 * FIX_COLS * sizeof(float));
            X[3 * FIX_COLS + 77] = 40.0f;
            for (int n = 1; n <= 4; n += 3) {
                run_mm(UHLM_SIMD_SCALAR, NULL, &t.W, X, n, Y0);
                CHECKF(check_ref(&t, X, n, Y0, uhlm_type_name(ktypes[k]), 0), "%s real blocks n=%d",
                       uhlm_type_name(ktypes[k]), n);
                for (int li = 1; li < 3; li++) {
                    if (!uhlm_simd_supported(levels[li])) continue;
                    run_mm(levels[li], NULL, &t.W, X, n, Y1);
                    CHECKF(same_bits(Y0, Y1, (size_t)n * rows, NULL), "%s %s real blocks n=%d: differs from scalar",
                           uhlm_type_name(ktypes[k]), uhlm_simd_name(levels[li]), n);
                }
            }
        } else {
            CHECKF(0, "%s: real-block fixture missing or of the wrong size", uhlm_type_name(ktypes[k]));
        }
        free(q);
        free(t.deq);
        free(X);
        free(Y0);
        free(Y1);
    }
    free(src);
}

/* Pool sizes 1 and 2 and no pool give the same bits; a row alone equals the same row inside a
 * batch; uhlm_matmul_multi equals single calls. */
static void test_determinism(void) {
    const int64_t rows[3] = {301, 66, 66}, cols = 768;
    const int n = 7;
    uhlm_error err;
    uhlm_pool *p1 = uhlm_pool_new(1, &err), *p2 = uhlm_pool_new(2, &err);
    CHECK(p1 && p2);
    float *X = malloc((size_t)n * cols * sizeof(float));
    float *Y0 = malloc((size_t)n * rows[0] * sizeof(float)), *Y1 = malloc((size_t)n * rows[0] * sizeof(float));
    float *Ym[3] = {malloc((size_t)n * rows[0] * sizeof(float)), malloc((size_t)n * rows[1] * sizeof(float)),
                    malloc((size_t)n * rows[2] * sizeof(float))};
    if (!(p1 && p2 && X && Y0 && Y1 && Ym[0] && Ym[1] && Ym[2])) {
        CHECK(!"out of memory");
        goto out;
    }
    for (size_t j = 0; j < (size_t)n * cols; j++) X[j] = frand();
    for (int k = 0; k < 5; k++) {
        kt t[3];
        int ok = 1;
        for (int m = 0; m < 3; m++) ok &= kt_make(&t[m], ktypes[k], rows[m], cols, m == 2) == 0;
        CHECK(ok);
        for (int li = 0; ok && li < 3; li++) {
            if (!uhlm_simd_supported(levels[li])) continue;
            const char *tn = uhlm_type_name(ktypes[k]), *ln = uhlm_simd_name(levels[li]);
            const size_t sz = (size_t)n * rows[0] * sizeof(float);
            run_mm(levels[li], NULL, &t[0].W, X, n, Y0);
            uhlm_pool *pools[2] = {p1, p2};
            for (int p = 0; p < 2; p++) {
                memset(Y1, 0, sz);
                run_mm(levels[li], pools[p], &t[0].W, X, n, Y1);
                CHECKF(memcmp(Y0, Y1, sz) == 0, "%s %s: pool of %d differs from no pool", tn, ln, p + 1);
            }
            int same = 1;
            for (int i = 0; i < n; i++) {
                run_mm(levels[li], p2, &t[0].W, X + (size_t)i * cols, 1, Y1);
                same &= memcmp(Y1, Y0 + (size_t)i * rows[0], (size_t)rows[0] * sizeof(float)) == 0;
            }
            CHECKF(same, "%s %s: a row alone differs from the same row in a batch", tn, ln);
            const uhlm_tensor *W[3] = {&t[0].W, &t[1].W, &t[2].W};
            void *scratch = malloc(uhlm_matmul_scratch(W[0], n));
            if (scratch) {
                uhlm_matmul_multi(levels[li], p2, W, Ym, 3, X, n, scratch);
                for (int m = 0; m < 3; m++) {
                    run_mm(levels[li], NULL, W[m], X, n, Y1);
                    CHECKF(memcmp(Y1, Ym[m], (size_t)n * rows[m] * sizeof(float)) == 0,
                           "%s %s: matrix %d of a multi call differs from its own call", tn, ln, m);
                }
            }
            free(scratch);
        }
        for (int m = 0; m < 3; m++) kt_free(&t[m]);
    }
out:
    free(X);
    free(Y0);
    free(Y1);
    for (int m = 0; m < 3; m++) free(Ym[m]);
    uhlm_pool_free(p1);
    uhlm_pool_free(p2);
}

int main(void) {
    test_types();
    test_dequant_random();
    test_quantize_vs_ggml();
    test_q8_K_vs_ggml();
    test_roundtrip_error();
    test_kernels();
    test_kernels_real();
    test_determinism();
    return check_report();
}
