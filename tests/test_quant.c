/* test_quant.c: fp16 conversion, block formats (bit layouts as llama.cpp writes them), type
 * helpers, SIMD level selection and uhlm_matmul for every type and every SIMD level this CPU
 * has, against double-precision references; plus determinism: identical bits for every pool
 * size and for a row computed alone or inside a batch. */
#include <stdint.h>

#include "check.h"
#include "model/kernels/quant_internal.h"
#include "model/kernels/quant.h"
#include "model/threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float ffrom(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const uhlm_simd levels[3] = {UHLM_SIMD_SCALAR, UHLM_SIMD_AVX2, UHLM_SIMD_AVX512};

/* ---------------------------------------------------------------- fp16 */

static void test_fp16_known(void) {
    CHECK(uhlm_f32_to_f16(0.0f) == 0x0000);
    CHECK(uhlm_f32_to_f16(-0.0f) == 0x8000);
    CHECK(uhlm_f32_to_f16(1.0f) == 0x3c00);
    CHECK(uhlm_f32_to_f16(-2.0f) == 0xc000);
    CHECK(uhlm_f32_to_f16(0.5f) == 0x3800);
    CHECK(uhlm_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(uhlm_f32_to_f16(65519.0f) == 0x7bff);  /* below the halfway point to 65536 */
    CHECK(uhlm_f32_to_f16(65520.0f) == 0x7c00);  /* halfway: ties to even = inf */
    CHECK(uhlm_f32_to_f16(1e10f) == 0x7c00);
    CHECK(uhlm_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(uhlm_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(uhlm_f32_to_f16(-INFINITY) == 0xfc00);
    uint16_t hn = uhlm_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    /* round to nearest even at 1.0: ulp(half) = 2^-10 */
    CHECK(uhlm_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);              /* tie, to even */
    CHECK(uhlm_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02);          /* tie, to even */
    CHECK(uhlm_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01);
    /* subnormals: unit 2^-24 */
    CHECK(uhlm_f32_to_f16(ldexpf(1, -24)) == 0x0001);
    CHECK(uhlm_f32_to_f16(ldexpf(1, -25)) == 0x0000);                     /* tie, to even */
    CHECK(uhlm_f32_to_f16(ldexpf(1, -25) * 1.001f) == 0x0001);
    CHECK(uhlm_f32_to_f16(ldexpf(3, -25)) == 0x0002);                     /* 1.5 units: tie */
    CHECK(uhlm_f32_to_f16(ldexpf(5, -25)) == 0x0002);                     /* 2.5 units: tie */
    CHECK(uhlm_f32_to_f16(ldexpf(1, -30)) == 0x0000);
    CHECK(uhlm_f32_to_f16(-ldexpf(1, -30)) == 0x8000);
    CHECK(uhlm_f32_to_f16(ldexpf(1023, -24)) == 0x03ff);
    CHECK(uhlm_f32_to_f16(ldexpf(1, -14)) == 0x0400);
    CHECK(uhlm_f32_to_f16(ldexpf(1, -14) - ldexpf(1, -26)) == 0x0400);   /* rounds up to normal */
    CHECK(uhlm_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(uhlm_f16_to_f32(0x03ff) == ldexpf(1023, -24));
    CHECK(uhlm_f16_to_f32(0x0400) == ldexpf(1, -14));
    CHECK(uhlm_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(uhlm_f16_to_f32(0x3555) == 0x1.554p-2f);
    CHECK(uhlm_f16_to_f32(0x7c00) == INFINITY);
    CHECK(uhlm_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(uhlm_f16_to_f32(0x7e00)) && isnan(uhlm_f16_to_f32(0x7c01)));
    CHECK(fbits(uhlm_f16_to_f32(0x8000)) == 0x80000000u);
}

/* Every half survives a round trip through float; NaNs stay NaNs. */
static void test_fp16_roundtrip(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = uhlm_f16_to_f32((uint16_t)h);
        uint16_t back = uhlm_f32_to_f16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad++;
    }
    CHECKF(bad == 0, "%d halves do not round-trip", bad);
    /* Against a double-precision nearest search on random floats in the half range. */
    bad = 0;
    for (int i = 0; i < 20000; i++) {
        float f = ldexpf(frand(), (int)(rnd() % 40) - 26);
        uint16_t h = uhlm_f32_to_f16(f);
        double e = fabs((double)uhlm_f16_to_f32(h) - f);
        double e1 = fabs((double)uhlm_f16_to_f32((uint16_t)(h + 1)) - f);
        double e2 = (h & 0x7fff) ? fabs((double)uhlm_f16_to_f32((uint16_t)(h - 1)) - f) : e;
        if (e > e1 || e > e2) bad++;
    }
    CHECKF(bad == 0, "%d conversions not nearest", bad);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

/* The software conversions must match F16C bit for bit, NaN payloads included. */
static void test_fp16_vs_f16c(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("f16c")) return;
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (fbits(uhlm_f16_to_f32((uint16_t)h)) != fbits(hw_h2f((uint16_t)h))) bad++;
    CHECKF(bad == 0, "f16->f32: %d differ from F16C", bad);
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rnd();
        /* half the samples near the half range where rounding is interesting */
        if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u % (0x47800000u - 0x33000000u)));
        float f = ffrom(u);
        if (uhlm_f32_to_f16(f) != hw_f2h(f)) bad++;
    }
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65520.0f, 65519.996f,
                              ldexpf(1, -25), ldexpf(3, -25), ldexpf(1, -14), 1e-45f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        if (uhlm_f32_to_f16(specials[i]) != hw_f2h(specials[i])) bad++;
    CHECKF(bad == 0, "f32->f16: %d differ from F16C", bad);
}
#endif

/* ---------------------------------------------------------------- blocks */

/* x[j] = j - 16: amax 16 so d = 16/127, stored as fp16 0x3008; q = roundf((j-16) * 127/16). */
static void test_q8_0_known(void) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    uhlm_block_q8_0 b;
    CHECK(sizeof b == 34 && sizeof(uhlm_block_q4_0) == 18);
    uhlm_quantize_row(UHLM_TYPE_Q8_0, x, &b, 32);
    CHECK(b.d == 0x3008);
    const int8_t want[32] = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48,
                             -40,  -32,  -24,  -16,  -8,  0,   8,   16,  24,  32,  40,
                             48,   56,   64,   71,   79,  87,  95,  103, 111, 119};
    CHECK(memcmp(b.qs, want, 32) == 0);
    /* hand-made block: dequantization is q * fp16(d) */
    uhlm_block_q8_0 h = {0x3800 /* 0.5 */, {0}};
    for (int j = 0; j < 32; j++) h.qs[j] = (int8_t)(j * 8 - 128);
    float y[32];
    uhlm_dequantize_row(UHLM_TYPE_Q8_0, &h, y, 32);
    int ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == (float)(j * 8 - 128) * 0.5f;
    CHECK(ok);
    /* roundf ties go away from zero: amax 127 gives d = 1 exactly */
    for (int j = 0; j < 32; j++) x[j] = (j & 1) ? 2.5f : -0.5f;
    x[7] = 127.0f;
    x[9] = -1.5f;
    uhlm_quantize_row(UHLM_TYPE_Q8_0, x, &b, 32);
    CHECK(b.d == 0x3c00 && b.qs[0] == -1 && b.qs[1] == 3 && b.qs[7] == 127 && b.qs[9] == -2);
    /* all zero: d = 0, q = 0 */
    memset(x, 0, sizeof x);
    uhlm_quantize_row(UHLM_TYPE_Q8_0, x, &b, 32);
    int z = b.d == 0;
    for (int j = 0; j < 32; j++) z &= b.qs[j] == 0;
    CHECK(z);
}

/* x[j] = j - 16: the largest magnitude is -16 (j = 0), so d = -16 / -8 = 2 and
 * q = min(15, (int)((j - 16) / 2 + 8.5)); element j in the low nibble of qs[j], j+16 high. */
static void test_q4_0_known(void) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    uhlm_block_q4_0 b;
    uhlm_quantize_row(UHLM_TYPE_Q4_0, x, &b, 32);
    CHECK(b.d == 0x4000);
    int ok = 1;
    for (int j = 0; j < 16; j++) {
        int lo = (j + 1) / 2, hi = 8 + (j + 1) / 2;
        if (hi > 15) hi = 15;
        ok &= (b.qs[j] & 15) == lo && (b.qs[j] >> 4) == hi;
    }
    CHECK(ok);
    CHECK(b.qs[0] == 0x80 && b.qs[15] == 0xf8);
    float y[32];
    uhlm_dequantize_row(UHLM_TYPE_Q4_0, &b, y, 32);
    CHECK(y[0] == -16.0f && y[16] == 0.0f && y[31] == 14.0f && y[3] == -12.0f);
    /* a positive maximum gives a negative scale: 10 maps to nibble 0 (value -8 * -1.25) */
    for (int j = 0; j < 32; j++) x[j] = 0.25f * (float)(j % 5);
    x[5] = 10.0f;
    uhlm_quantize_row(UHLM_TYPE_Q4_0, x, &b, 32);
    CHECK(b.d == uhlm_f32_to_f16(-1.25f) && (b.qs[5] & 15) == 0);
    uhlm_dequantize_row(UHLM_TYPE_Q4_0, &b, y, 32);
    CHECK(y[5] == 10.0f);
    /* a hand-made block */
    uhlm_block_q4_0 h = {0x3c00, {0}};
    for (int j = 0; j < 16; j++) h.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    uhlm_dequantize_row(UHLM_TYPE_Q4_0, &h, y, 32);
    ok = 1;
    for (int j = 0; j < 16; j++) ok &= y[j] == (float)(j - 8) && y[j + 16] == (float)(7 - j);
    CHECK(ok);
}

/* Reconstruction error per block: Q8_0 within half a step (plus the fp16 rounding of d over
 * 127 steps), Q4_0 within one step (the clamp at 15 can cost a full step on the side opposite
 * to the maximum). */
static void test_block_error(void) {
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uhlm_block_q8_0 *q8 = malloc(N / 32 * sizeof *q8);
    uhlm_block_q4_0 *q4 = malloc(N / 32 * sizeof *q4);
    CHECK(x && y && q8 && q4);
    if (!(x && y && q8 && q4)) goto out;
    for (int i = 0; i < N; i++) x[i] = frand() * (1.0f + (float)(i / 32)) * ((i / 32) % 3 ? 1e-3f : 10.0f);
    uhlm_quantize_row(UHLM_TYPE_Q8_0, x, q8, N);
    uhlm_dequantize_row(UHLM_TYPE_Q8_0, q8, y, N);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        const float d = amax / 127, dh = uhlm_f16_to_f32(q8[b].d);
        for (int j = 0; j < 32; j++)
            if (fabsf(x[b * 32 + j] - y[b * 32 + j]) > 0.5f * d * 1.001f + 127 * fabsf(d - dh))
                bad++;
    }
    CHECKF(bad == 0, "q8_0: %d elements off", bad);
    uhlm_quantize_row(UHLM_TYPE_Q4_0, x, q4, N);
    uhlm_dequantize_row(UHLM_TYPE_Q4_0, q4, y, N);
    bad = 0;
    for (int b = 0; b < N / 32; b++) {
        const float dh = fabsf(uhlm_f16_to_f32(q4[b].d));
        for (int j = 0; j < 32; j++)
            if (fabsf(x[b * 32 + j] - y[b * 32 + j]) > 1.001f * dh) bad++;
    }
    CHECKF(bad == 0, "q4_0: %d elements off", bad);
    /* F16 / F32 rows */
    uint16_t *h = (uint16_t *)q8;
    uhlm_quantize_row(UHLM_TYPE_F16, x, h, 512);
    uhlm_dequantize_row(UHLM_TYPE_F16, h, y, 512);
    bad = 0;
    for (int i = 0; i < 512; i++) bad += h[i] != uhlm_f32_to_f16(x[i]) || y[i] != uhlm_f16_to_f32(h[i]);
    CHECK(bad == 0);
    uhlm_quantize_row(UHLM_TYPE_F32, x, y, N);
    CHECK(memcmp(x, y, N * sizeof(float)) == 0);
out:
    free(x);
    free(y);
    free(q8);
    free(q4);
}

/* The activation quantizers of every level give the same bytes as the reference, including
 * rounding ties, zero blocks and non-finite input. */
static void test_quantize_x_levels(void) {
    enum { NB = 200 };
    float *x = malloc(NB * 32 * sizeof(float));
    int8_t *q0 = malloc(NB * 32), *q1 = malloc(NB * 32);
    float *d0 = malloc(NB * sizeof(float)), *d1 = malloc(NB * sizeof(float));
    CHECK(x && q0 && q1 && d0 && d1);
    if (!(x && q0 && q1 && d0 && d1)) goto out;
    for (int i = 0; i < NB * 32; i++) x[i] = frand() * 3.0f;
    /* block 0: d = 1 exactly, values on .5 ties */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + ((j & 1) ? 0.5f : -0.5f);
    x[3] = 127.0f;
    memset(x + 32, 0, 32 * sizeof(float)); /* block 1: zeros */
    x[64] = INFINITY;                       /* block 2: inf */
    x[96 + 5] = NAN;                        /* block 3: NaN */
    x[128] = -1e-40f;                       /* block 4: denormal amax */
    for (int j = 1; j < 32; j++) x[128 + j] = 0.0f;
    uhlm_kernels ks;
    memset(&ks, 0, sizeof ks);
    uhlm_kernels_scalar(&ks);
    ks.quantize_x(x, q0, d0, NB);
    for (int b = 0; b < NB; b++) {
        uhlm_block_q8_0 blk;
        uhlm_quantize_block_q8_0(x + b * 32, blk.qs, &blk.d, NULL);
        if (b == 2 || b == 3) continue; /* non-finite: only consistency across levels */
        CHECKF(memcmp(blk.qs, q0 + b * 32, 32) == 0 && uhlm_f16_to_f32(blk.d) == d0[b],
               "block %d", b);
    }
    /* ties round away from zero */
    int ties = 1;
    for (int j = 0; j < 32; j++)
        if (j != 3) ties &= q0[j] == (int8_t)(x[j] > 0 ? x[j] + 0.5f : x[j] - 0.5f);
    CHECK(ties);
    for (int li = 1; li < 3; li++) {
        if (!uhlm_simd_supported(levels[li])) continue;
        uhlm_kernels k = ks;
        uhlm_kernels_avx2(&k);
        if (levels[li] == UHLM_SIMD_AVX512) uhlm_kernels_avx512(&k, 1);
        memset(q1, 0x55, NB * 32);
        k.quantize_x(x, q1, d1, NB);
        CHECKF(memcmp(q0, q1, NB * 32) == 0, "%s: quantized activations differ",
               uhlm_simd_name(levels[li]));
        int same = 1;
        for (int b = 0; b < NB; b++) same &= fbits(d0[b]) == fbits(d1[b]) || (isnan(d0[b]) && isnan(d1[b]));
        CHECKF(same, "%s: activation scales differ", uhlm_simd_name(levels[li]));
    }
out:
    free(x);
    free(q0);
    free(q1);
    free(d0);
    free(d1);
}

/* ---------------------------------------------------------------- types and levels */

static void test_types(void) {
    uhlm_type t;
    CHECK(!strcmp(uhlm_type_name(UHLM_TYPE_F32), "f32") && !strcmp(uhlm_type_name(UHLM_TYPE_F16), "f16"));
    CHECK(!strcmp(uhlm_type_name(UHLM_TYPE_Q8_0), "q8_0") && !strcmp(uhlm_type_name(UHLM_TYPE_Q4_0), "q4_0"));
    CHECK(!strcmp(uhlm_type_name(UHLM_TYPE_Q8_G), "q8_g"));
    CHECK(uhlm_type_from_name("Q4_0", &t) == 0 && t == UHLM_TYPE_Q4_0);
    CHECK(uhlm_type_from_name("f16", &t) == 0 && t == UHLM_TYPE_F16);
    CHECK(uhlm_type_from_name("q8_g", &t) == 0 && t == UHLM_TYPE_Q8_G);
    CHECK(uhlm_type_from_name("q4_2", &t) != 0 && uhlm_type_from_name(NULL, &t) != 0);
    CHECK(uhlm_type_is_gguf(0) && uhlm_type_is_gguf(1) && uhlm_type_is_gguf(2) && uhlm_type_is_gguf(8));
    CHECK(!uhlm_type_is_gguf(4) && !uhlm_type_is_gguf(9) && !uhlm_type_is_gguf(1000) && !uhlm_type_is_gguf(-1));
    CHECK(uhlm_type_block(UHLM_TYPE_F32) == 1 && uhlm_type_block(UHLM_TYPE_F16) == 1);
    CHECK(uhlm_type_block(UHLM_TYPE_Q8_0) == 32 && uhlm_type_block(UHLM_TYPE_Q4_0) == 32);
    CHECK(uhlm_type_bytes(UHLM_TYPE_F32, 64) == 256 && uhlm_type_bytes(UHLM_TYPE_F16, 64) == 128);
    CHECK(uhlm_type_bytes(UHLM_TYPE_Q8_0, 64) == 68 && uhlm_type_bytes(UHLM_TYPE_Q4_0, 64) == 36);
    CHECK(uhlm_type_bytes(UHLM_TYPE_Q8_G, 64) == 64);
    uhlm_tensor w = {UHLM_TYPE_Q4_0, 10, 64, NULL, NULL, 0};
    CHECK(uhlm_tensor_nbytes(&w) == 360);
    uhlm_tensor g = {UHLM_TYPE_Q8_G, 3, 40, NULL, NULL, 16};
    CHECK(uhlm_tensor_nbytes(&g) == 120 + 8 * 4);

    uhlm_simd s;
    CHECK(uhlm_simd_from_name("AVX2", &s) == 0 && s == UHLM_SIMD_AVX2);
    CHECK(uhlm_simd_from_name("scalar", &s) == 0 && s == UHLM_SIMD_SCALAR);
    CHECK(uhlm_simd_from_name("avx512", &s) == 0 && s == UHLM_SIMD_AVX512);
    CHECK(uhlm_simd_from_name("auto", &s) == 0 && s == UHLM_SIMD_AUTO);
    CHECK(uhlm_simd_from_name("neon", &s) != 0);
    CHECK(!strcmp(uhlm_simd_name(UHLM_SIMD_AVX512), "avx512"));
    CHECK(uhlm_simd_supported(UHLM_SIMD_SCALAR));
    CHECK(uhlm_simd_resolve(UHLM_SIMD_SCALAR) == UHLM_SIMD_SCALAR);
    CHECK(uhlm_simd_resolve(UHLM_SIMD_AVX2) == UHLM_SIMD_AVX2);
    const char *old = getenv("UHLM_SIMD");
    char saved[64] = "";
    if (old) snprintf(saved, sizeof saved, "%s", old);
    unsetenv("UHLM_SIMD");
    uhlm_simd best = uhlm_simd_resolve(UHLM_SIMD_AUTO);
    CHECK(best != UHLM_SIMD_AUTO && uhlm_simd_supported(best));
    if (uhlm_simd_supported(UHLM_SIMD_AVX512)) CHECK(best == UHLM_SIMD_AVX512);
    if (uhlm_simd_supported(UHLM_SIMD_AVX512)) CHECK(uhlm_simd_supported(UHLM_SIMD_AVX2));
    setenv("UHLM_SIMD", "scalar", 1);
    CHECK(uhlm_simd_resolve(UHLM_SIMD_AUTO) == UHLM_SIMD_SCALAR);
    CHECK(uhlm_simd_resolve(UHLM_SIMD_AVX2) == UHLM_SIMD_AVX2); /* only AUTO is overridden */
    setenv("UHLM_SIMD", "bogus", 1);
    CHECK(uhlm_simd_resolve(UHLM_SIMD_AUTO) == best);
    if (old)
        setenv("UHLM_SIMD", saved, 1);
    else
        unsetenv("UHLM_SIMD");
    printf("CPU levels: scalar%s%s\n", uhlm_simd_supported(UHLM_SIMD_AVX2) ? " avx2" : "",
           uhlm_simd_supported(UHLM_SIMD_AVX512) ? " avx512" : "");
}

/* ---------------------------------------------------------------- matmul */

typedef struct {
    uhlm_tensor W;
    void *data;
    float *scales;
    float *deq; /* rows x cols, the weights as floats */
} wtensor;

static void wt_free(wtensor *t) {
    free(t->data);
    free(t->scales);
    free(t->deq);
}

/* Random weights of a type; row magnitudes vary so scales differ between rows. */
static int wt_make(wtensor *t, uhlm_type type, int64_t rows, int64_t cols, int group) {
    memset(t, 0, sizeof *t);
    t->W.type = type;
    t->W.rows = rows;
    t->W.cols = cols;
    size_t n = (size_t)rows * (size_t)cols;
    float *src = malloc(n * sizeof(float));
    t->deq = malloc(n * sizeof(float));
    if (type == UHLM_TYPE_Q8_G) {
        t->W.group = group;
        size_t ng = (n + (size_t)group - 1) / (size_t)group;
        t->data = malloc(n);
        t->scales = malloc(ng * sizeof(float));
        if (!src || !t->deq || !t->data || !t->scales) goto fail;
        int8_t *q = t->data;
        for (size_t i = 0; i < n; i++) q[i] = (int8_t)(rnd() % 255 - 127);
        for (size_t g = 0; g < ng; g++) t->scales[g] = (0.5f + frand()) * 0.01f;
        t->W.scales = t->scales;
    } else {
        size_t rb = uhlm_type_bytes(type, cols);
        t->data = malloc(rb * (size_t)rows);
        if (!src || !t->deq || !t->data) goto fail;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                src[r * cols + j] = frand() * (1.0f + (float)(r % 7)) * 0.1f;
        for (int64_t r = 0; r < rows; r++)
            uhlm_quantize_row(type, src + r * cols, (uint8_t *)t->data + (size_t)r * rb, cols);
    }
    t->W.data = t->data;
    for (int64_t r = 0; r < rows; r++) uhlm_tensor_row(&t->W, r, t->deq + r * cols);
    free(src);
    return 0;
fail:
    free(src);
    wt_free(t);
    return -1;
}

static int is_quant(uhlm_type t) { return t == UHLM_TYPE_Q8_0 || t == UHLM_TYPE_Q4_0; }

/* Runs uhlm_matmul with a scratch buffer of exactly the advertised size (ASan checks it). */
static void run_mm(uhlm_simd s, uhlm_pool *p, const uhlm_tensor *W, const float *X, int n, float *Y) {
    size_t ss = uhlm_matmul_scratch(W, n);
    void *scratch = ss ? malloc(ss) : NULL;
    if (ss && !scratch) {
        CHECK(!"out of memory");
        return;
    }
    uhlm_matmul(s, p, W, X, n, Y, scratch);
    free(scratch);
}

/* Checks Y against double references: exact-arithmetic (the dequantized weights times the
 * activations as the kernel sees them) tightly, plain float activations loosely. */
static int check_against_ref(const wtensor *t, const float *X, int n, const float *Y, const char *what) {
    const int64_t rows = t->W.rows, cols = t->W.cols;
    const int q = is_quant(t->W.type);
    float *xq = malloc((size_t)cols * sizeof(float));
    uhlm_block_q8_0 *blk = malloc((size_t)(cols / 32 + 1) * sizeof *blk);
    if (!xq || !blk) {
        free(xq);
        free(blk);
        return 0;
    }
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)i * cols;
        if (q) {
            uhlm_quantize_row(UHLM_TYPE_Q8_0, x, blk, cols);
            uhlm_dequantize_row(UHLM_TYPE_Q8_0, blk, xq, cols);
        } else {
            memcpy(xq, x, (size_t)cols * sizeof(float));
        }
        for (int64_t r = 0; r < rows; r++) {
            const float *w = t->deq + r * cols;
            double exact = 0, mag = 0, loose = 0, lmag = 0;
            for (int64_t j = 0; j < cols; j++) {
                exact += (double)w[j] * xq[j];
                mag += fabs((double)w[j] * xq[j]);
                loose += (double)w[j] * x[j];
                lmag += fabs((double)w[j] * x[j]);
            }
            const double y = Y[(size_t)i * rows + r];
            /* float accumulation: a few ulps of the magnitude sum */
            const double tol = 2e-6 * mag + 1e-30;
            const double err = fabs(y - exact);
            if (err / (mag + 1e-30) > worst) worst = err / (mag + 1e-30);
            if (!(err <= tol)) bad++;
            if (q) {
                /* activation rounding: half a Q8_0 step per element, on average much less */
                if (!(fabs(y - loose) <= 0.02 * lmag + 1e-30)) bad++;
            }
        }
    }
    if (bad) fprintf(stderr, "%s: %d mismatches, worst relative error %.3g\n", what, bad, worst);
    free(xq);
    free(blk);
    return bad == 0;
}

static void test_matmul_shapes(void) {
    const uhlm_type types[] = {UHLM_TYPE_F32, UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0};
    const int64_t shapes[][2] = {{1, 32}, {5, 64}, {13, 96}, {37, 160}, {64, 256}, {67, 800},
                                 {9, 19}, {7, 35}, {3, 8}, {6, 1}, {11, 47}, {4, 17}};
    const int ns[] = {1, 2, 3, 4, 5, 17};
    uhlm_error err;
    uhlm_pool *pool = uhlm_pool_new(2, &err);
    CHECKF(pool != NULL, "%s", err.msg);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t rows = shapes[si][0], cols = shapes[si][1];
            if (is_quant(types[ti]) && cols % 32) continue;
            wtensor t;
            if (wt_make(&t, types[ti], rows, cols, 0) != 0) {
                CHECK(!"out of memory");
                continue;
            }
            float *X = malloc(17 * (size_t)cols * sizeof(float));
            float *Y = malloc(17 * (size_t)rows * sizeof(float));
            CHECK(X && Y);
            if (X && Y) {
                for (size_t k = 0; k < 17 * (size_t)cols; k++) X[k] = frand();
                for (int li = 0; li < 3; li++) {
                    if (!uhlm_simd_supported(levels[li])) continue;
                    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                        char what[128];
                        snprintf(what, sizeof what, "%s %s %lldx%lld n=%d", uhlm_type_name(types[ti]),
                                 uhlm_simd_name(levels[li]), (long long)rows, (long long)cols, ns[ni]);
                        for (size_t k = 0; k < (size_t)ns[ni] * rows; k++) Y[k] = NAN;
                        run_mm(levels[li], (ni & 1) ? pool : NULL, &t.W, X, ns[ni], Y);
                        CHECKF(check_against_ref(&t, X, ns[ni], Y, what), "%s", what);
                    }
                }
            }
            free(X);
            free(Y);
            wt_free(&t);
        }
    uhlm_pool_free(pool);
}

/* Q8_G: groups straddle rows when cols % group != 0; the AVX2 path needs cols % group == 0 and
 * group % 8 == 0. Both are checked against the double reference. */
static void test_matmul_q8_g(void) {
    const int64_t cfg[][3] = {{5, 40, 16}, {7, 24, 64}, {9, 64, 16}, {6, 128, 64}, {13, 48, 24},
                              {3, 30, 7},  {33, 96, 32}, {5, 256, 256}, {4, 20, 3}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        wtensor t;
        if (wt_make(&t, UHLM_TYPE_Q8_G, cfg[c][0], cfg[c][1], (int)cfg[c][2]) != 0) {
            CHECK(!"out of memory");
            continue;
        }
        const int64_t rows = cfg[c][0], cols = cfg[c][1], G = cfg[c][2];
        /* tensor_row follows the tensor-wide group layout */
        int ok = 1;
        const int8_t *q = t.data;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                ok &= t.deq[r * cols + j] == (float)q[r * cols + j] * t.scales[(r * cols + j) / G];
        CHECK(ok);
        float *X = malloc(5 * (size_t)cols * sizeof(float)), *Y = malloc(5 * (size_t)rows * sizeof(float));
        CHECK(X && Y);
        if (X && Y) {
            for (size_t k = 0; k < 5 * (size_t)cols; k++) X[k] = frand();
            for (int li = 0; li < 3; li++) {
                if (!uhlm_simd_supported(levels[li])) continue;
                for (int n = 1; n <= 5; n += 2) {
                    char what[128];
                    snprintf(what, sizeof what, "q8_g %s %lldx%lld group %lld n=%d",
                             uhlm_simd_name(levels[li]), (long long)rows, (long long)cols,
                             (long long)G, n);
                    run_mm(levels[li], NULL, &t.W, X, n, Y);
                    CHECKF(check_against_ref(&t, X, n, Y, what), "%s", what);
                }
            }
        }
        free(X);
        free(Y);
        wt_free(&t);
    }
}

/* Identical bits for pool sizes 1-4 and no pool; a row computed alone equals the same row
 * inside a batch. Different SIMD levels are not required to agree bit for bit (AVX2 keeps
 * 8-lane partial sums per block, the AVX-512 VNNI kernel one exact integer per block, which
 * is fastest on each); each level is checked against the exact reference instead. */
static void test_matmul_determinism(void) {
    const uhlm_type types[] = {UHLM_TYPE_F32, UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0, UHLM_TYPE_Q8_G};
    const int64_t rows = 301, cols = 256;
    const int n = 7;
    uhlm_pool *pools[5] = {NULL, NULL, NULL, NULL, NULL};
    uhlm_error err;
    for (int p = 1; p <= 4; p++) {
        pools[p] = uhlm_pool_new(p, &err);
        CHECKF(pools[p] != NULL, "%s", err.msg);
    }
    float *X = malloc((size_t)n * cols * sizeof(float));
    float *Y0 = malloc((size_t)n * rows * sizeof(float)), *Y1 = malloc((size_t)n * rows * sizeof(float));
    float *Yv[3] = {NULL, NULL, NULL};
    for (int li = 0; li < 3; li++) Yv[li] = malloc((size_t)n * rows * sizeof(float));
    CHECK(X && Y0 && Y1 && Yv[0] && Yv[1] && Yv[2]);
    if (!(X && Y0 && Y1 && Yv[0] && Yv[1] && Yv[2])) goto out;
    for (size_t k = 0; k < (size_t)n * cols; k++) X[k] = frand();
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        wtensor t;
        if (wt_make(&t, types[ti], rows, cols, 64) != 0) {
            CHECK(!"out of memory");
            continue;
        }
        for (int li = 0; li < 3; li++) {
            if (!uhlm_simd_supported(levels[li])) continue;
            const char *ln = uhlm_simd_name(levels[li]);
            run_mm(levels[li], NULL, &t.W, X, n, Y0);
            memcpy(Yv[li], Y0, (size_t)n * rows * sizeof(float));
            for (int p = 1; p <= 4; p++) {
                if (!pools[p]) continue;
                for (int rep = 0; rep < 3; rep++) {
                    memset(Y1, 0, (size_t)n * rows * sizeof(float));
                    run_mm(levels[li], pools[p], &t.W, X, n, Y1);
                    CHECKF(memcmp(Y0, Y1, (size_t)n * rows * sizeof(float)) == 0,
                           "%s %s: pool of %d differs from no pool", uhlm_type_name(types[ti]), ln, p);
                }
            }
            int same = 1;
            for (int i = 0; i < n; i++) {
                run_mm(levels[li], pools[2], &t.W, X + (size_t)i * cols, 1, Y1);
                same &= memcmp(Y1, Y0 + (size_t)i * rows, (size_t)rows * sizeof(float)) == 0;
            }
            CHECKF(same, "%s %s: a row alone differs from the same row in a batch",
                   uhlm_type_name(types[ti]), ln);
            /* batches of 2 and 3 (the one-token kernels' multi-row case) against the same */
            for (int k = 2; k <= 3; k++) {
                run_mm(levels[li], pools[2], &t.W, X, k, Y1);
                CHECKF(memcmp(Y1, Y0, (size_t)k * rows * sizeof(float)) == 0,
                       "%s %s: a batch of %d differs from the same rows in a batch of %d",
                       uhlm_type_name(types[ti]), ln, k, n);
            }
        }
        wt_free(&t);
    }
out:
    free(X);
    free(Y0);
    free(Y1);
    for (int li = 0; li < 3; li++) free(Yv[li]);
    for (int p = 1; p <= 4; p++) uhlm_pool_free(pools[p]);
}

/* F32 / F16 one-token kernels on widths that leave tails (a 16-column step, a masked or scalar
 * remainder) and fewer rows than one group of eight: a row alone, and batches of 2 and 3, give
 * the bits of the same rows in a batch of 7 (the batched tiles), on every pool size. */
static void test_matmul_float_tails(void) {
    const uhlm_type types[] = {UHLM_TYPE_F32, UHLM_TYPE_F16};
    const int64_t shapes[][2] = {{13, 277}, {5, 24}, {19, 7}, {9, 200}};
    const int n = 7;
    uhlm_error err;
    uhlm_pool *pool3 = uhlm_pool_new(3, &err);
    CHECKF(pool3 != NULL, "%s", err.msg);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t rows = shapes[si][0], cols = shapes[si][1];
        float *X = malloc((size_t)n * cols * sizeof(float));
        float *Y0 = malloc((size_t)n * rows * sizeof(float)), *Y1 = malloc((size_t)n * rows * sizeof(float));
        CHECK(X && Y0 && Y1);
        if (!(X && Y0 && Y1)) {
            free(X);
            free(Y0);
            free(Y1);
            continue;
        }
        for (size_t k = 0; k < (size_t)n * cols; k++) X[k] = frand();
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            wtensor t;
            if (wt_make(&t, types[ti], rows, cols, 64) != 0) {
                CHECK(!"out of memory");
                continue;
            }
            for (int li = 0; li < 3; li++) {
                if (!uhlm_simd_supported(levels[li])) continue;
                const char *ln = uhlm_simd_name(levels[li]);
                run_mm(levels[li], NULL, &t.W, X, n, Y0);
                for (int pi = 0; pi < 2; pi++) {
                    uhlm_pool *pool = pi ? pool3 : NULL;
                    int same = 1;
                    for (int i = 0; i < n; i++) {
                        run_mm(levels[li], pool, &t.W, X + (size_t)i * cols, 1, Y1);
                        same &= memcmp(Y1, Y0 + (size_t)i * rows, (size_t)rows * sizeof(float)) == 0;
                    }
                    CHECKF(same, "%s %s %lldx%lld: a row alone differs from the batch",
                           uhlm_type_name(types[ti]), ln, (long long)rows, (long long)cols);
                    for (int k = 2; k <= 3; k++) {
                        run_mm(levels[li], pool, &t.W, X, k, Y1);
                        CHECKF(memcmp(Y1, Y0, (size_t)k * rows * sizeof(float)) == 0,
                               "%s %s %lldx%lld: a batch of %d differs from the batch of %d",
                               uhlm_type_name(types[ti]), ln, (long long)rows, (long long)cols,
                               k, n);
                    }
                }
            }
            wt_free(&t);
        }
        free(X);
        free(Y0);
        free(Y1);
    }
    uhlm_pool_free(pool3);
}

/* uhlm_matmul_multi: each output equals uhlm_matmul of its matrix alone, bit for bit, for
 * matrices of different row counts (the key/value projections of grouped-query attention) in
 * one parallel loop, and for mixed types, which it runs one after another. */
static void test_matmul_multi(void) {
    const uhlm_type types[] = {UHLM_TYPE_F32, UHLM_TYPE_F16, UHLM_TYPE_Q8_0, UHLM_TYPE_Q4_0, UHLM_TYPE_Q8_G};
    const int64_t rows[3] = {130, 33, 33}, cols = 96;
    const int n = 5;
    uhlm_error err;
    uhlm_pool *pool = uhlm_pool_new(2, &err);
    CHECKF(pool != NULL, "%s", err.msg);
    float *X = malloc((size_t)n * cols * sizeof(float));
    float *Y[3], *Z = malloc((size_t)n * rows[0] * sizeof(float));
    for (int m = 0; m < 3; m++) Y[m] = malloc((size_t)n * rows[m] * sizeof(float));
    CHECK(X && Z && Y[0] && Y[1] && Y[2]);
    if (!(X && Z && Y[0] && Y[1] && Y[2])) goto out;
    for (size_t k = 0; k < (size_t)n * cols; k++) X[k] = frand();
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        wtensor t[3];
        int ok = 1;
        for (int m = 0; m < 3; m++) {
            /* the last matrix is F32 in the mixed round */
            uhlm_type ty = (ti == 0 || m < 2) ? types[ti] : UHLM_TYPE_F32;
            ok &= wt_make(&t[m], ty, rows[m], cols, 32) == 0;
        }
        CHECK(ok);
        for (int li = 0; ok && li < 3; li++) {
            if (!uhlm_simd_supported(levels[li])) continue;
            const uhlm_tensor *W[3] = {&t[0].W, &t[1].W, &t[2].W};
            size_t ss = 0;
            for (int m = 0; m < 3; m++) {
                size_t s1 = uhlm_matmul_scratch(W[m], n);
                if (s1 > ss) ss = s1;
            }
            void *scratch = ss ? malloc(ss) : NULL;
            for (int m = 0; m < 3; m++) memset(Y[m], 0, (size_t)n * rows[m] * sizeof(float));
            uhlm_matmul_multi(levels[li], pool, W, Y, 3, X, n, scratch);
            for (int m = 0; m < 3; m++) {
                run_mm(levels[li], NULL, W[m], X, n, Z);
                CHECKF(memcmp(Z, Y[m], (size_t)n * rows[m] * sizeof(float)) == 0,
                       "%s %s: matrix %d of a multi call differs from a call of its own",
                       uhlm_type_name(W[m]->type), uhlm_simd_name(levels[li]), m);
            }
            free(scratch);
        }
        for (int m = 0; m < 3; m++) wt_free(&t[m]);
    }
out:
    free(X);
    free(Z);
    for (int m = 0; m < 3; m++) free(Y[m]);
    uhlm_pool_free(pool);
}

/* Scratch: the advertised size suffices for any n; types without activation quantization
 * need none; an empty call writes nothing. */
static void test_scratch(void) {
    uhlm_tensor w = {UHLM_TYPE_Q4_0, 4, 4096, NULL, NULL, 0};
    CHECK(uhlm_matmul_scratch(&w, 3) >= 3 * 4096 + 3 * 128 * sizeof(float));
    w.type = UHLM_TYPE_F32;
    CHECK(uhlm_matmul_scratch(&w, 3) == 0);
    float y = 42.0f;
    uhlm_matmul(UHLM_SIMD_SCALAR, NULL, &w, NULL, 0, &y, NULL);
    CHECK(y == 42.0f);
}

int main(void) {
    test_fp16_known();
    test_fp16_roundtrip();
#if defined(__x86_64__)
    test_fp16_vs_f16c();
#endif
    test_q8_0_known();
    test_q4_0_known();
    test_block_error();
    test_quantize_x_levels();
    test_types();
    test_matmul_shapes();
    test_matmul_q8_g();
    test_matmul_determinism();
    test_matmul_float_tails();
    test_matmul_multi();
    test_scratch();
    return check_report();
}
