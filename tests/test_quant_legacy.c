/* test_quant_legacy.c: the legacy block types Q4_1, Q5_0, Q5_1 (and the activation type Q8_1).
 *
 * Bit for bit with llama.cpp: quantization against ggml's quantize_row_*_ref and gguf.quants,
 * dequantization against ggml's dequantize_row_* and gguf.quants, on edge-case and random blocks
 * (tests/fixtures/quant_legacy.bin, from scripts/make_quant_fixtures_legacy.py) and on real
 * blocks of SmolLM2-135M-Instruct.Q4_1.gguf (skipped when the file is absent). Kernels: every
 * SIMD level this CPU has against an exact double reference of llama.cpp's dot arithmetic and
 * a float one, odd shapes, n = 1..9; AVX2 and AVX-512 bit-identical; results identical for
 * every pool size, for a row alone or in a batch, and through uhlm_matmul_multi; a whole
 * SmolLM2 Q4_1 matrix against the F32 product of its dequantized weights. Models: GGUF files
 * of these types written and loaded (weights, file type, logits against F32, scalar against
 * SIMD), and re-quantization from Q4_1 going through F32. */
#include <stdint.h>

#include "check.h"
#include "model/kernels/quant_internal.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "model/kernels/quant.h"
#include "model/threadpool.h"

static const uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};
static const uhlm_type ltypes[3] = {UHLM_TYPE_Q4_1, UHLM_TYPE_Q5_0, UHLM_TYPE_Q5_1};

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static const char *source_path(const char *rel) {
    static char buf[1024];
    const char *src = getenv("UHLM_SOURCE_DIR");
    const char *cands[3] = {src, ".", ".."};
    for (int i = 0; i < 3; i++) {
        if (!cands[i]) continue;
        snprintf(buf, sizeof buf, "%s/%s", cands[i], rel);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, sizeof buf, "%s", rel);
    return buf;
}

/* The SmolLM2 file where the project looks for models, or NULL (the callers skip). */
static const char *smollm_path(void) {
    static char buf[4096];
    const char *name = "SmolLM2-135M-Instruct.Q4_1.gguf";
    const char *env = getenv("UHLM_MODELS"), *src = getenv("UHLM_SOURCE_DIR");
    const char *cands[5][2] = {{env, ""}, {"models", ""}, {src, "/models"},
                               {src, "/../shared/models"}, {"../shared/models", ""}};
    for (int i = 0; i < 5; i++) {
        if (!cands[i][0]) continue;
        snprintf(buf, sizeof buf, "%s%s/%s", cands[i][0], cands[i][1], name);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* ---------------------------------------------------------------- types */

static void test_types(void) {
    CHECK(sizeof(uhlm_block_q4_1) == 20 && sizeof(uhlm_block_q5_0) == 22);
    CHECK(sizeof(uhlm_block_q5_1) == 24 && sizeof(uhlm_block_q8_1) == 36);
    CHECK(UHLM_TYPE_Q4_1 == 3 && UHLM_TYPE_Q5_0 == 6 && UHLM_TYPE_Q5_1 == 7 && UHLM_TYPE_Q8_1 == 9);
    const char *names[4] = {"q4_1", "q5_0", "q5_1", "q8_1"};
    const uhlm_type all[4] = {UHLM_TYPE_Q4_1, UHLM_TYPE_Q5_0, UHLM_TYPE_Q5_1, UHLM_TYPE_Q8_1};
    const size_t bytes[4] = {20, 22, 24, 36};
    for (int i = 0; i < 4; i++) {
        uhlm_type t;
        CHECK(!strcmp(uhlm_type_name(all[i]), names[i]));
        CHECK(uhlm_type_from_name(names[i], &t) == 0 && t == all[i]);
        CHECK(uhlm_type_block(all[i]) == 32);
        CHECK(uhlm_type_bytes(all[i], 96) == 3 * bytes[i]);
        CHECK(uhlm_type_is_gguf((int)all[i]) == (all[i] != UHLM_TYPE_Q8_1));
        uhlm_tensor w = {all[i], 7, 64, NULL, NULL, 0};
        CHECK(uhlm_tensor_nbytes(&w) == 14 * bytes[i]);
    }
    uhlm_type t;
    CHECK(uhlm_type_from_name("Q5_1", &t) == 0 && t == UHLM_TYPE_Q5_1);
    /* activation scratch: values, scales, sums, and the Q8_1 s for the types with a minimum */
    uhlm_tensor w = {UHLM_TYPE_Q4_1, 4, 4096, NULL, NULL, 0};
    CHECK(uhlm_matmul_scratch(&w, 3) >= 3 * 4096 + 3 * 128 * (4 + 4 + 4));
    w.type = UHLM_TYPE_Q5_0;
    CHECK(uhlm_matmul_scratch(&w, 3) >= 3 * 4096 + 3 * 128 * (4 + 4));
}

/* Hand-checked blocks: the arithmetic and the bit layout. */
static void test_known(void) {
    float x[32], y[32];
    /* x = j / 2: min 0, max 15.5, d = 15.5 / 15; element j -> round(j / 2 / d) */
    for (int j = 0; j < 32; j++) x[j] = (float)j * 0.5f;
    uhlm_block_q4_1 b41;
    uhlm_quantize_row(UHLM_TYPE_Q4_1, x, &b41, 32);
    CHECK(b41.m == 0 && b41.d == uhlm_f32_to_f16(15.5f / 15.0f));
    CHECK((b41.qs[0] & 15) == 0 && (b41.qs[15] >> 4) == 15 && (b41.qs[2] & 15) == 1);
    /* Q5_0: largest magnitude -16 at j = 0 -> d = 1, q = x + 16 (17 + 16 = 33 clamps to 31) */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    uhlm_block_q5_0 b50;
    uhlm_quantize_row(UHLM_TYPE_Q5_0, x, &b50, 32);
    CHECK(b50.d == 0x3c00);
    uhlm_dequantize_row(UHLM_TYPE_Q5_0, &b50, y, 32);
    int ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == x[j];
    CHECK(ok);
    /* qh: bit j = fifth bit of element j; elements 16..31 are j - 16 + 16 = j >= 16 */
    CHECK(b50.qh[0] == 0 && b50.qh[1] == 0 && b50.qh[2] == 0xff && b50.qh[3] == 0xff);
    /* Q5_1 hand-made: d = 2, m = -1, element j = j (all five bits used) */
    uhlm_block_q5_1 b51 = {0x4000, 0xbc00, {0}, {0}};
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        b51.qs[j] = (uint8_t)((j & 15) | (((j + 16) & 15) << 4));
        qh |= (uint32_t)((j >> 4) & 1) << j | (uint32_t)(((j + 16) >> 4) & 1) << (j + 16);
    }
    memcpy(b51.qh, &qh, 4);
    uhlm_dequantize_row(UHLM_TYPE_Q5_1, &b51, y, 32);
    ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == 2.0f * (float)j - 1.0f;
    CHECK(ok);
    /* Q8_1: Q8_0 values, s = fp16(d * sum q) with the unrounded d */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 10) * 0.1f;
    uhlm_block_q8_1 b81;
    uhlm_block_q8_0 b80;
    uhlm_quantize_row(UHLM_TYPE_Q8_1, x, &b81, 32);
    uhlm_quantize_row(UHLM_TYPE_Q8_0, x, &b80, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += b80.qs[j];
    CHECK(b81.d == b80.d && memcmp(b81.qs, b80.qs, 32) == 0);
    CHECK(b81.s == uhlm_f32_to_f16((float)sum * (2.1f / 127.0f)));
}

/* ---------------------------------------------------------------- fixtures */

typedef struct {
    uint8_t *buf;
    size_t len, pos;
    int bad;
} reader;

static const void *take(reader *r, size_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const void *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static uint32_t take_u32(reader *r) {
    uint32_t v = 0;
    const void *p = take(r, 4);
    if (p) memcpy(&v, p, 4);
    return v;
}

static uint64_t take_u64(reader *r) {
    uint64_t v = 0;
    const void *p = take(r, 8);
    if (p) memcpy(&v, p, 8);
    return v;
}

/* Copies out unaligned float data. */
static float *take_f32(reader *r, size_t n) {
    const void *p = take(r, n * sizeof(float));
    float *f = p ? malloc(n * sizeof(float)) : NULL;
    if (f) memcpy(f, p, n * sizeof(float));
    return f;
}

static int read_fixture(reader *r) {
    const char *path = source_path("tests/fixtures/quant_legacy.bin");
    FILE *f = fopen(path, "rb");
    memset(r, 0, sizeof *r);
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto fail;
    long len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
    r->buf = malloc((size_t)len);
    if (!r->buf || fread(r->buf, 1, (size_t)len, f) != (size_t)len) goto fail;
    fclose(f);
    r->len = (size_t)len;
    const void *magic = take(r, 8);
    return magic && memcmp(magic, "UHLMQL01", 8) == 0 ? 0 : -1;
fail:
    fclose(f);
    free(r->buf);
    r->buf = NULL;
    return -1;
}

/* Finds the SmolLM2 blocks of the fixture in the model file and checks their dequantization. */
static void check_real_blocks(reader *r) {
    const uint32_t nt = take_u32(r);
    const char *path = smollm_path();
    uhlm_gguf *g = NULL;
    uhlm_error err;
    if (!path)
        printf("SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found: real-block checks skipped\n");
    else if (!(g = uhlm_gguf_open(path, &err)))
        CHECKF(0, "%s", err.msg);
    for (uint32_t t = 0; t < nt && !r->bad; t++) {
        const uint32_t nl = take_u32(r);
        const char *np = take(r, nl);
        char name[128] = "";
        if (np && nl < sizeof name) memcpy(name, np, nl);
        const uint64_t first = take_u64(r);
        const uint32_t k = take_u32(r);
        const uint8_t *raw = take(r, (size_t)k * 20);
        float *want = take_f32(r, (size_t)k * 32);
        float *got = malloc((size_t)k * 32 * sizeof(float));
        CHECK(!r->bad && want && got);
        if (g && want && got && raw) {
            const uhlm_gguf_tensor *gt = uhlm_gguf_find_tensor(g, name);
            CHECKF(gt && gt->type == UHLM_TYPE_Q4_1 && gt->nbytes >= (first + k) * 20,
                   "%s: missing or not Q4_1", name);
            if (gt && gt->type == UHLM_TYPE_Q4_1 && gt->nbytes >= (first + k) * 20) {
                const uint8_t *src = (const uint8_t *)gt->data + first * 20;
                CHECKF(memcmp(src, raw, (size_t)k * 20) == 0,
                       "%s: the file's blocks are not the fixture's (another file?)", name);
                uhlm_dequantize_row(UHLM_TYPE_Q4_1, src, got, (int64_t)k * 32);
                CHECKF(same_bits(got, want, (size_t)k * 32),
                       "%s blocks %llu+%u: dequantization differs from gguf.quants", name,
                       (unsigned long long)first, k);
                /* the tensor-row path (embedding lookup) gives the same floats */
                uhlm_tensor W = {UHLM_TYPE_Q4_1, (int64_t)gt->ne[1], (int64_t)gt->ne[0], gt->data,
                                 NULL, 0};
                const int64_t bpr = W.cols / 32;
                if (first % bpr == 0 && k >= bpr) {
                    uhlm_tensor_row(&W, (int64_t)(first / bpr), got);
                    CHECK(same_bits(got, want, (size_t)W.cols));
                }
            }
        }
        free(want);
        free(got);
    }
    if (g) printf("real blocks: %u tensors of %s checked\n", nt, path);
    uhlm_gguf_close(g);
}

static void test_fixtures(void) {
    reader r;
    if (read_fixture(&r) != 0) {
        CHECK(!"tests/fixtures/quant_legacy.bin unreadable (run scripts/make_quant_fixtures_legacy.py)");
        free(r.buf);
        return;
    }
    /* quantization: every block as llama.cpp's reference writes it */
    const uint32_t nb = take_u32(&r);
    float *x = take_f32(&r, (size_t)nb * 32);
    const uhlm_type qt[4] = {UHLM_TYPE_Q4_1, UHLM_TYPE_Q5_0, UHLM_TYPE_Q5_1, UHLM_TYPE_Q8_1};
    uint8_t *q = malloc((size_t)nb * 36);
    float *y = malloc((size_t)nb * 32 * sizeof(float));
    CHECK(x && q && y);
    for (int ti = 0; ti < 4 && x && q && y; ti++) {
        const size_t bs = uhlm_type_bytes(qt[ti], 32);
        const uint8_t *want = take(&r, nb * bs);
        if (!want) break;
        uhlm_quantize_row(qt[ti], x, q, (int64_t)nb * 32);
        int bad = 0, first = -1;
        for (uint32_t b = 0; b < nb; b++)
            if (memcmp(q + b * bs, want + b * bs, bs) != 0) {
                if (first < 0) first = (int)b;
                bad++;
            }
        CHECKF(bad == 0, "%s: %d of %u blocks differ from ggml's reference (first: %d)",
               uhlm_type_name(qt[ti]), bad, nb, first);
    }
    /* dequantization of random blocks (any bits, finite scales) */
    const uint32_t nr = take_u32(&r);
    for (int ti = 0; ti < 3 && !r.bad; ti++) {
        const size_t bs = uhlm_type_bytes(ltypes[ti], 32);
        const uint8_t *raw = take(&r, nr * bs);
        float *want = take_f32(&r, (size_t)nr * 32);
        float *got = malloc((size_t)nr * 32 * sizeof(float));
        CHECK(raw && want && got);
        if (raw && want && got) {
            uhlm_dequantize_row(ltypes[ti], raw, got, (int64_t)nr * 32);
            CHECKF(same_bits(got, want, (size_t)nr * 32), "%s: dequantization differs",
                   uhlm_type_name(ltypes[ti]));
        }
        free(want);
        free(got);
    }
    check_real_blocks(&r);
    CHECKF(!r.bad && r.pos == r.len, "fixture truncated or longer than expected (%zu of %zu)", r.pos,
           r.len);
    free(x);
    free(q);
    free(y);
    free(r.buf);
}

/* ---------------------------------------------------------------- kernels */

/* Integer values, scale and minimum of one weight block (minimum 0 for Q5_0, offset applied). */
static void block_vals(uhlm_type t, const void *blk, int *v, double *d, double *m) {
    uint32_t qh = 0;
    const uint8_t *qs;
    switch (t) {
    case UHLM_TYPE_Q4_1: {
        const uhlm_block_q4_1 *b = blk;
        *d = uhlm_f16_to_f32(b->d);
        *m = uhlm_f16_to_f32(b->m);
        qs = b->qs;
        break;
    }
    case UHLM_TYPE_Q5_0: {
        const uhlm_block_q5_0 *b = blk;
        *d = uhlm_f16_to_f32(b->d);
        *m = 0;
        memcpy(&qh, b->qh, 4);
        qs = b->qs;
        break;
    }
    default: {
        const uhlm_block_q5_1 *b = blk;
        *d = uhlm_f16_to_f32(b->d);
        *m = uhlm_f16_to_f32(b->m);
        memcpy(&qh, b->qh, 4);
        qs = b->qs;
        break;
    }
    }
    for (int j = 0; j < 16; j++) {
        v[j] = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        v[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
    if (t == UHLM_TYPE_Q5_0)
        for (int j = 0; j < 32; j++) v[j] -= 16;
}

typedef struct {
    uhlm_tensor W;
    void *data;
    float *deq;
} wtensor;

static int wt_make(wtensor *t, uhlm_type type, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    const size_t rb = uhlm_type_bytes(type, cols);
    float *src = malloc((size_t)cols * sizeof(float));
    t->data = malloc(rb * (size_t)rows);
    t->deq = malloc((size_t)rows * (size_t)cols * sizeof(float));
    if (!src || !t->data || !t->deq) {
        free(src);
        free(t->data);
        free(t->deq);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        /* rows of different magnitude and offset, so scales and minimums vary */
        const float off = (r % 3 == 0) ? 0.05f * (float)(r % 5) : 0.0f;
        for (int64_t j = 0; j < cols; j++) src[j] = frand() * (1.0f + (float)(r % 7)) * 0.1f + off;
        uhlm_quantize_row(type, src, (uint8_t *)t->data + (size_t)r * rb, cols);
    }
    t->W = (uhlm_tensor){type, rows, cols, t->data, NULL, 0};
    for (int64_t r = 0; r < rows; r++) uhlm_tensor_row(&t->W, r, t->deq + r * cols);
    free(src);
    return 0;
}

static void wt_free(wtensor *t) {
    free(t->data);
    free(t->deq);
}

static void run_mm(uhlm_simd s, uhlm_pool *p, const uhlm_tensor *W, const float *X, int n, float *Y) {
    size_t ss = uhlm_matmul_scratch(W, n);
    void *scratch = malloc(ss);
    if (!scratch) {
        CHECK(!"out of memory");
        return;
    }
    uhlm_matmul(s, p, W, X, n, Y, scratch);
    free(scratch);
}

/* Y against (1) llama.cpp's dot arithmetic in double: per block d_w d_x sum(q_w q_x) + m_w s_x
 * with the activations quantized to Q8_1 exactly as the kernel does - a few float roundings per
 * block (tolerance 2e-6 of the sum of magnitudes); (2) the float product of the dequantized
 * weights and the unquantized activations - Q8 activation rounding (2% of the magnitudes). */
static int check_ref(const wtensor *t, const float *X, int n, const float *Y, const char *what,
                     double *worst_out) {
    const int64_t rows = t->W.rows, cols = t->W.cols, nb = cols / 32;
    const size_t rb = uhlm_type_bytes(t->W.type, cols);
    uhlm_block_q8_1 *xb = malloc((size_t)nb * sizeof *xb);
    if (!xb) return 0;
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)i * cols;
        uhlm_quantize_row(UHLM_TYPE_Q8_1, x, xb, cols);
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *wr = (const uint8_t *)t->data + (size_t)r * rb;
            double exact = 0, mag = 0, loose = 0, lmag = 0;
            for (int64_t b = 0; b < nb; b++) {
                int v[32];
                double d, m;
                block_vals(t->W.type, wr + (size_t)b * (rb / (size_t)nb), v, &d, &m);
                long s = 0, sa = 0;
                for (int j = 0; j < 32; j++) {
                    s += (long)v[j] * xb[b].qs[j];
                    sa += labs((long)v[j] * xb[b].qs[j]);
                }
                const double dd = (double)(float)(d * uhlm_f16_to_f32(xb[b].d));
                const double main = dd * (double)s;
                const double mt = t->W.type == UHLM_TYPE_Q5_0 ? 0 : m * uhlm_f16_to_f32(xb[b].s);
                exact += main + mt;
                mag += fabs(dd) * (double)sa + fabs(mt); /* SIMD sums lanes in float */
            }
            for (int64_t j = 0; j < cols; j++) {
                loose += (double)t->deq[r * cols + j] * x[j];
                lmag += fabs((double)t->deq[r * cols + j] * x[j]);
            }
            const double y = Y[(size_t)i * rows + r];
            const double err = fabs(y - exact);
            if (err / (mag + 1e-30) > worst) worst = err / (mag + 1e-30);
            if (!(err <= 2e-6 * mag + 1e-30)) bad++;
            if (!(fabs(y - loose) <= 0.02 * lmag + 1e-30)) bad++;
        }
    }
    if (bad) fprintf(stderr, "%s: %d mismatches, worst relative error %.3g\n", what, bad, worst);
    if (worst_out && worst > *worst_out) *worst_out = worst;
    free(xb);
    return bad == 0;
}

static int vnni(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static void test_kernels(void) {
    const int64_t shapes[][2] = {{1, 32}, {5, 64}, {13, 96}, {37, 160}, {3, 576}, {67, 800},
                                 {9, 1536}, {4, 128}, {130, 224}};
    uhlm_error err;
    uhlm_pool *pool = uhlm_pool_new(2, &err);
    CHECKF(pool != NULL, "%s", err.msg);
    double worst[3] = {0, 0, 0};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            wtensor t;
            if (wt_make(&t, ltypes[ti], rows, cols) != 0) {
                CHECK(!"out of memory");
                continue;
            }
            float *X = malloc(9 * (size_t)cols * sizeof(float));
            float *Y[3];
            for (int li = 0; li < 3; li++) Y[li] = malloc(9 * (size_t)rows * sizeof(float));
            CHECK(X && Y[0] && Y[1] && Y[2]);
            if (X && Y[0] && Y[1] && Y[2]) {
                for (size_t k = 0; k < 9 * (size_t)cols; k++) X[k] = frand() + (k % 11 == 0 ? 0.5f : 0.0f);
                for (int n = 1; n <= 9; n++) {
                    for (int li = 0; li < 3; li++) {
                        if (!uhlm_simd_supported(levels[li])) continue;
                        char what[128];
                        snprintf(what, sizeof what, "%s %s %lldx%lld n=%d",
                                 uhlm_type_name(ltypes[ti]), uhlm_simd_name(levels[li]),
                                 (long long)rows, (long long)cols, n);
                        for (size_t k = 0; k < (size_t)n * rows; k++) Y[li][k] = NAN;
                        run_mm(levels[li], (n & 1) ? pool : NULL, &t.W, X, n, Y[li]);
                        CHECKF(check_ref(&t, X, n, Y[li], what, &worst[li]), "%s", what);
                    }
                    /* AVX-512 VNNI computes the AVX2 kernel's integer lanes and float ops */
                    if (uhlm_simd_supported(UHLM_SIMD_AVX512) && vnni())
                        CHECKF(same_bits(Y[1], Y[2], (size_t)n * rows), "%s %lldx%lld n=%d: avx2 "
                               "and avx512 differ", uhlm_type_name(ltypes[ti]), (long long)rows,
                               (long long)cols, n);
                }
            }
            free(X);
            for (int li = 0; li < 3; li++) free(Y[li]);
            wt_free(&t);
        }
    for (int li = 0; li < 3; li++)
        if (uhlm_simd_supported(levels[li]))
            printf("%s: worst error against the exact reference %.2g of the magnitude sum\n",
                   uhlm_simd_name(levels[li]), worst[li]);
    uhlm_pool_free(pool);
}

/* Identical bits for pool sizes 1, 2, 3 and none; a row alone equals the same row in a batch;
 * uhlm_matmul_multi equals separate calls (also mixed with another type). */
static void test_determinism(void) {
    const int64_t rows = 301, cols = 320;
    const int n = 7;
    uhlm_pool *pools[4] = {NULL, NULL, NULL, NULL};
    uhlm_error err;
    for (int p = 1; p <= 3; p++) {
        pools[p] = uhlm_pool_new(p, &err);
        CHECKF(pools[p] != NULL, "%s", err.msg);
    }
    float *X = malloc((size_t)n * cols * sizeof(float));
    float *Y0 = malloc((size_t)n * rows * sizeof(float)), *Y1 = malloc((size_t)n * rows * sizeof(float));
    float *Y2 = malloc((size_t)n * rows * sizeof(float));
    CHECK(X && Y0 && Y1 && Y2);
    if (!(X && Y0 && Y1 && Y2)) goto out;
    for (size_t k = 0; k < (size_t)n * cols; k++) X[k] = frand();
    for (int ti = 0; ti < 3; ti++) {
        wtensor t, u, v;
        if (wt_make(&t, ltypes[ti], rows, cols) != 0 || wt_make(&u, ltypes[ti], 64, cols) != 0 ||
            wt_make(&v, UHLM_TYPE_Q8_0, 33, cols) != 0) {
            CHECK(!"out of memory");
            continue;
        }
        for (int li = 0; li < 3; li++) {
            if (!uhlm_simd_supported(levels[li])) continue;
            const char *tn = uhlm_type_name(ltypes[ti]), *ln = uhlm_simd_name(levels[li]);
            run_mm(levels[li], NULL, &t.W, X, n, Y0);
            for (int p = 1; p <= 3; p++) {
                if (!pools[p]) continue;
                memset(Y1, 0, (size_t)n * rows * sizeof(float));
                run_mm(levels[li], pools[p], &t.W, X, n, Y1);
                CHECKF(same_bits(Y0, Y1, (size_t)n * rows), "%s %s: pool of %d differs", tn, ln, p);
            }
            int same = 1;
            for (int i = 0; i < n; i++) {
                run_mm(levels[li], pools[2], &t.W, X + (size_t)i * cols, 1, Y1);
                same &= same_bits(Y1, Y0 + (size_t)i * rows, (size_t)rows);
            }
            CHECKF(same, "%s %s: a row alone differs from the same row in a batch", tn, ln);
            /* multi: t, u of this type in one loop, then with a Q8_0 matrix (run one by one) */
            for (int mixed = 0; mixed < 2; mixed++) {
                const uhlm_tensor *W[3] = {&t.W, &u.W, mixed ? &v.W : &u.W};
                float *Ys[3] = {Y1, Y2, Y2 + (size_t)n * 64};
                size_t ss = 0;
                for (int m = 0; m < 3; m++)
                    if (uhlm_matmul_scratch(W[m], n) > ss) ss = uhlm_matmul_scratch(W[m], n);
                void *scratch = malloc(ss);
                if (!scratch) continue;
                uhlm_matmul_multi(levels[li], pools[2], W, Ys, 3, X, n, scratch);
                CHECKF(same_bits(Y0, Y1, (size_t)n * rows), "%s %s: multi differs", tn, ln);
                float *Z = malloc((size_t)n * 64 * sizeof(float));
                if (Z) {
                    run_mm(levels[li], NULL, W[2], X, n, Z);
                    CHECKF(same_bits(Z, Ys[2], (size_t)n * (size_t)W[2]->rows),
                           "%s %s: multi's third matrix differs", tn, ln);
                }
                free(Z);
                free(scratch);
            }
        }
        wt_free(&t);
        wt_free(&u);
        wt_free(&v);
    }
out:
    free(X);
    free(Y0);
    free(Y1);
    free(Y2);
    for (int p = 1; p <= 3; p++) uhlm_pool_free(pools[p]);
}

/* A whole SmolLM2 Q4_1 matrix times random vectors at every level, against the F32 product of
 * its dequantized weights. */
static void test_smollm_matrix(void) {
    const char *path = smollm_path();
    if (!path) {
        printf("SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found: whole-matrix check skipped\n");
        return;
    }
    uhlm_error err;
    uhlm_gguf *g = uhlm_gguf_open(path, &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (!g) return;
    const char *names[2] = {"blk.0.ffn_down.weight", "blk.29.ffn_gate.weight"};
    for (int k = 0; k < 2; k++) {
        const uhlm_gguf_tensor *gt = uhlm_gguf_find_tensor(g, names[k]);
        CHECKF(gt && gt->type == UHLM_TYPE_Q4_1, "%s not found or not Q4_1", names[k]);
        if (!gt || gt->type != UHLM_TYPE_Q4_1) continue;
        wtensor t = {{UHLM_TYPE_Q4_1, (int64_t)gt->ne[1], (int64_t)gt->ne[0], gt->data, NULL, 0},
                     (void *)gt->data, NULL};
        const int64_t rows = t.W.rows, cols = t.W.cols;
        const int n = 2;
        t.deq = malloc((size_t)rows * cols * sizeof(float));
        float *X = malloc((size_t)n * cols * sizeof(float)), *Y = malloc((size_t)n * rows * sizeof(float));
        float *R = malloc((size_t)n * rows * sizeof(float));
        CHECK(t.deq && X && Y && R);
        if (t.deq && X && Y && R) {
            for (int64_t r = 0; r < rows; r++) uhlm_tensor_row(&t.W, r, t.deq + r * cols);
            for (size_t j = 0; j < (size_t)n * cols; j++) X[j] = frand();
            /* the F32 reference: uhlm's own F32 kernel on the dequantized weights */
            uhlm_tensor F = {UHLM_TYPE_F32, rows, cols, t.deq, NULL, 0};
            uhlm_matmul(UHLM_SIMD_SCALAR, NULL, &F, X, n, R, NULL);
            for (int li = 0; li < 3; li++) {
                if (!uhlm_simd_supported(levels[li])) continue;
                char what[128];
                snprintf(what, sizeof what, "SmolLM2 %s [%lld x %lld] %s", names[k],
                         (long long)rows, (long long)cols, uhlm_simd_name(levels[li]));
                run_mm(levels[li], NULL, &t.W, X, n, Y);
                CHECKF(check_ref(&t, X, n, Y, what, NULL), "%s", what);
                double num = 0, den = 0;
                for (size_t j = 0; j < (size_t)n * rows; j++) {
                    num += ((double)Y[j] - R[j]) * ((double)Y[j] - R[j]);
                    den += (double)R[j] * R[j];
                }
                /* Q8 activations: about 0.4% relative error for random inputs */
                CHECKF(sqrt(num / den) < 0.01, "%s: relative RMS error %.3g vs F32", what,
                       sqrt(num / den));
                printf("%s: relative RMS difference from the F32 product %.2g\n", what,
                       sqrt(num / den));
            }
        }
        free(t.deq);
        free(X);
        free(Y);
        free(R);
    }
    uhlm_gguf_close(g);
}

/* ---------------------------------------------------------------- models */

static int logits(const uhlm_model *m, uhlm_simd simd, const int *toks, int n, float *out) {
    uhlm_ctx_params p = uhlm_ctx_default_params();
    p.n_seq = 1;
    p.n_threads = 2;
    p.simd = simd;
    uhlm_error err = {{0}};
    uhlm_ctx *c = uhlm_ctx_new(m, &p, &err);
    uhlm_batch_entry *b = malloc(sizeof *b * (size_t)n);
    int rc = -1;
    if (c && b) {
        for (int i = 0; i < n; i++) b[i] = (uhlm_batch_entry){0, i, toks[i], 1};
        rc = uhlm_decode(c, b, n, out, NULL, &err);
    }
    if (rc) fprintf(stderr, "logits: %s\n", err.msg);
    free(b);
    uhlm_ctx_free(c);
    return rc;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Every row of `to` is `from`'s row converted to to's type through f32 (quantize(dequantize)). */
static int converted_rows(const uhlm_tensor *from, const uhlm_tensor *to, uhlm_type t) {
    if (to->type != t || to->rows != from->rows || to->cols != from->cols) return 0;
    const int64_t cols = from->cols;
    float *x = malloc((size_t)cols * sizeof(float)), *y = malloc((size_t)cols * sizeof(float));
    float *z = malloc((size_t)cols * sizeof(float));
    void *q = malloc(uhlm_type_bytes(t, cols) + 4 * (size_t)cols);
    int ok = x && y && z && q;
    for (int64_t r = 0; ok && r < from->rows; r++) {
        uhlm_tensor_row(from, r, x);
        uhlm_quantize_row(t, x, q, cols);
        uhlm_dequantize_row(t, q, y, cols);
        uhlm_tensor_row(to, r, z);
        ok = same_bits(y, z, (size_t)cols);
    }
    free(x);
    free(y);
    free(z);
    free(q);
    return ok;
}

static int all_rows(const uhlm_model *a, const uhlm_model *b, uhlm_type t) {
    int ok = converted_rows(&a->w.tok_embd, &b->w.tok_embd, t);
    for (int l = 0; l < uhlm_model_config(a)->n_layers; l++) {
        const uhlm_layer *u = &a->w.layers[l], *v = &b->w.layers[l];
        ok &= converted_rows(&u->wq, &v->wq, t) && converted_rows(&u->wk, &v->wk, t) &&
              converted_rows(&u->wv, &v->wv, t) && converted_rows(&u->wo, &v->wo, t) &&
              converted_rows(&u->w1, &v->w1, t) && converted_rows(&u->w2, &v->w2, t) &&
              converted_rows(&u->w3, &v->w3, t);
    }
    return ok;
}

static void test_models(void) {
    uhlm_error err = {{0}};
    uhlm_model *a = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                                    uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(a != NULL, "%s", err.msg);
    if (!a) return;
    static const int probe[] = {1, 403, 407, 261, 378, 268, 261, 301, 350, 442, 290, 262,
                                355, 259, 300, 318, 423, 275, 304, 260, 291, 440, 290, 46};
    const int np = (int)(sizeof probe / sizeof probe[0]), V = uhlm_model_config(a)->vocab_size;
    float *l0 = malloc((size_t)np * V * 4), *l1 = malloc((size_t)np * V * 4);
    float *l2 = malloc((size_t)np * V * 4);
    CHECK(l0 && l1 && l2 && logits(a, UHLM_SIMD_AUTO, probe, np, l0) == 0);
    /* max abs logit error of the formats on this model (logits span ~[-20, 20]); Q4_0 is
     * allowed 4.0 in test_model */
    const double tol[3] = {3.0, 2.0, 1.5};
    const int ftype[3] = {3, 8, 9};
    char p[512], p2[512];
    snprintf(p, sizeof p, "%s/uhlm_test_ql_%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    snprintf(p2, sizeof p2, "%s/uhlm_test_ql2_%d.gguf", uhlm_test_tmpdir(), (int)getpid());
    for (int ti = 0; ti < 3 && l0 && l1 && l2; ti++) {
        const uhlm_type t = ltypes[ti];
        CHECKF(uhlm_gguf_save_llama(a, t, p, &err) == 0, "%s", err.msg);
        uhlm_model *q = uhlm_model_load(p, NULL, &err);
        CHECKF(q != NULL, "%s: %s", uhlm_type_name(t), err.msg);
        if (!q) continue;
        CHECK(uhlm_model_weight_type(q) == t);
        int64_t v = -1;
        CHECK(uhlm_gguf_get_int(q->gguf, "general.file_type", &v, &err) == 0 && v == ftype[ti]);
        CHECKF(all_rows(a, q, t), "%s: a matrix is not the quantized f32 weights", uhlm_type_name(t));
        CHECK(logits(q, UHLM_SIMD_AUTO, probe, np, l1) == 0);
        const double d = maxdiff(l0, l1, (size_t)np * V);
        printf("gguf %s: max abs logit diff vs f32 %.3g (tolerance %g)\n", uhlm_type_name(t), d,
               tol[ti]);
        CHECKF(d < tol[ti], "%s: %g", uhlm_type_name(t), d);
        /* scalar vs SIMD: within a small part of the format's own error (one flipped activation
         * rounding moves later layers by up to half a step, as test_model documents) */
        CHECK(logits(q, UHLM_SIMD_SCALAR, probe, np, l2) == 0);
        printf("gguf %s: max abs logit diff scalar vs simd %.3g\n", uhlm_type_name(t),
               maxdiff(l1, l2, (size_t)np * V));
        CHECK(maxdiff(l1, l2, (size_t)np * V) < 0.3);
        if (t == UHLM_TYPE_Q4_1) {
            /* re-quantizing: same type copies the bytes; other types go through f32 */
            const uhlm_type to[4] = {UHLM_TYPE_Q4_1, UHLM_TYPE_F32, UHLM_TYPE_Q8_0, UHLM_TYPE_Q5_0};
            for (int k = 0; k < 4; k++) {
                CHECKF(uhlm_gguf_save_llama(q, to[k], p2, &err) == 0, "%s", err.msg);
                uhlm_model *r = uhlm_model_load(p2, NULL, &err);
                CHECKF(r != NULL, "%s", err.msg);
                if (!r) continue;
                if (to[k] == UHLM_TYPE_Q4_1)
                    CHECK(r->w.layers[1].w2.type == t &&
                          !memcmp(r->w.layers[1].w2.data, q->w.layers[1].w2.data,
                                  uhlm_tensor_nbytes(&q->w.layers[1].w2)));
                CHECKF(all_rows(q, r, to[k]), "q4_1 -> %s", uhlm_type_name(to[k]));
                uhlm_model_free(r);
            }
        }
        uhlm_model_free(q);
    }
    unlink(p);
    unlink(p2);
    free(l0);
    free(l1);
    free(l2);
    uhlm_model_free(a);
}

int main(void) {
    test_types();
    test_known();
    test_fixtures();
    test_kernels();
    test_determinism();
    test_smollm_matrix();
    test_models();
    return check_report();
}
