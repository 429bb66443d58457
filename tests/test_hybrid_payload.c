/* test_hybrid_payload.c: payload syntax, sizes in bits, round trips, the exact layout of
 * topk, and refusal of malformed bytes (the decoder reads untrusted input). */
#include <stdint.h>

#include "check.h"
#include "uhlm/payload.h"
#include "uhlm/sampler.h"

static void test_parse(void) {
    uhlm_payload_spec s;
    uhlm_error err;
    char buf[32];
    CHECK(uhlm_payload_parse("f32", &s, &err) == 0 && s.kind == UHLM_PAYLOAD_F32);
    CHECK(uhlm_payload_parse("f16", &s, &err) == 0 && s.kind == UHLM_PAYLOAD_F16);
    CHECK(uhlm_payload_parse("topk:32", &s, &err) == 0 && s.kind == UHLM_PAYLOAD_TOPK &&
          s.k == 32 && s.prob_bits == 8);
    uhlm_payload_format(&s, buf, sizeof buf);
    CHECK(!strcmp(buf, "topk:32:8"));
    CHECK(uhlm_payload_parse("topk:7:16", &s, &err) == 0 && s.k == 7 && s.prob_bits == 16);
    CHECK(uhlm_payload_parse("topk:7:8", &s, &err) == 0 && s.prob_bits == 8);
    const char *bad[] = {"f64",       "topk",    "topk:",      "topk:0", "topk:-3", "topk:5x",
                         "topk:5:12", "topk:5:", "topk:5:8:1", "",       "F32"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(uhlm_payload_parse(bad[i], &s, &err) != 0, "accepted '%s'", bad[i]);
    CHECK(uhlm_payload_parse("topk:600", &s, &err) == 0);
    CHECK(uhlm_payload_check(&s, 512, &err) != 0); /* K > V */
    CHECK(strstr(err.msg, "512") != NULL);
}

static void test_sizes(void) {
    CHECK(uhlm_token_bits(1) == 0 && uhlm_token_bits(2) == 1 && uhlm_token_bits(512) == 9);
    CHECK(uhlm_token_bits(513) == 10 && uhlm_token_bits(32000) == 15);
    uhlm_payload_spec f32 = {UHLM_PAYLOAD_F32, 0, 0}, f16 = {UHLM_PAYLOAD_F16, 0, 0};
    uhlm_payload_spec t8 = {UHLM_PAYLOAD_TOPK, 32, 8}, t16 = {UHLM_PAYLOAD_TOPK, 64, 16};
    CHECK(uhlm_payload_bits(&f32, 32000) == 1024000); /* the paper's 128 kB per token */
    CHECK(uhlm_payload_bytes(&f32, 32000) == 128000);
    CHECK(uhlm_payload_bits(&f16, 512) == 8192);
    CHECK(uhlm_payload_bits(&t8, 512) == 32 * (9 + 8));
    CHECK(uhlm_payload_bytes(&t8, 512) == 68);
    CHECK(uhlm_payload_bits(&t16, 32000) == 64 * (15 + 16));
    CHECK(uhlm_payload_bytes(&t16, 32000) == 248);
    uhlm_payload_spec t3 = {UHLM_PAYLOAD_TOPK, 3, 8};
    CHECK(uhlm_payload_bits(&t3, 512) == 51 && uhlm_payload_bytes(&t3, 512) == 7);
}

static void random_dist(float *x, int n, double sharp, uint64_t seed) {
    uhlm_rng r;
    uhlm_rng_seed(&r, seed);
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)exp(sharp * (uhlm_rng_uniform(&r) - 1.0) * 10.0);
        s += x[i];
    }
    for (int i = 0; i < n; i++) x[i] = (float)(x[i] / s);
}

static double sum(const float *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

static void test_roundtrip(void) {
    enum { N = 512 };
    float x[N], xt[N], xt2[N];
    uint8_t buf[4 * N];
    uhlm_error err;
    random_dist(x, N, 1.5, 1);
    uhlm_payload_spec f32 = {UHLM_PAYLOAD_F32, 0, 0}, f16 = {UHLM_PAYLOAD_F16, 0, 0};
    long nb = uhlm_payload_encode(&f32, x, N, buf, sizeof buf, &err);
    CHECK(nb == 4 * N);
    CHECK(uhlm_payload_decode(&f32, buf, (size_t)nb, N, xt, &err) == 0);
    double md = 0.0;
    for (int i = 0; i < N; i++) md = fmax(md, fabs((double)xt[i] - x[i]) / fmax(x[i], 1e-30));
    CHECKF(md < 1e-6, "f32 rel err %g", md);
    CHECK(fabs(sum(xt, N) - 1.0) < 1e-5);
    CHECK(uhlm_payload_encode(&f32, x, N, buf, 100, &err) < 0); /* too small a buffer */

    nb = uhlm_payload_encode(&f16, x, N, buf, sizeof buf, &err);
    CHECK(nb == 2 * N);
    CHECK(uhlm_payload_decode(&f16, buf, (size_t)nb, N, xt, &err) == 0);
    md = 0.0;
    for (int i = 0; i < N; i++) md = fmax(md, fabs((double)xt[i] - x[i]));
    CHECKF(md < 1e-3, "f16 abs err %g", md);
    CHECK(fabs(sum(xt, N) - 1.0) < 1e-5);
    /* x~ is a function of the bytes: decoding again gives the same floats bit for bit */
    CHECK(uhlm_payload_decode(&f16, buf, (size_t)nb, N, xt2, &err) == 0);
    CHECK(memcmp(xt, xt2, sizeof xt) == 0);

    for (int bits = 8; bits <= 16; bits += 8) {
        const int ks[] = {1, 4, 16, 64, N - 1, N};
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            int k = ks[ki];
            uhlm_payload_spec t = {UHLM_PAYLOAD_TOPK, k, bits};
            nb = uhlm_payload_encode(&t, x, N, buf, sizeof buf, &err);
            CHECKF(nb == (long)uhlm_payload_bytes(&t, N), "k %d bits %d nb %ld", k, bits, nb);
            CHECK(uhlm_payload_decode(&t, buf, (size_t)nb, N, xt, &err) == 0);
            CHECKF(fabs(sum(xt, N) - 1.0) < 1e-5, "k %d sum %g", k, sum(xt, N));
            /* the K most probable keep their value within one quantum (K = V: renormalised,
             * so within a quantum plus the rescaling); every other token gets the same R/(V-K) */
            const double Q = (double)((1 << bits) - 1);
            double top_err = 0.0;
            float c[N];
            memcpy(c, x, sizeof c);
            for (int j = 0; j < k; j++) {
                int b = 0;
                for (int i = 1; i < N; i++)
                    if (c[i] > c[b]) b = i;
                c[b] = -1.0f;
                top_err = fmax(top_err, fabs((double)xt[b] - x[b]));
            }
            CHECKF(top_err <= 1.0 / Q + 1e-6, "k %d top err %g", k, top_err);
            float tailv = -1.0f;
            int same = 1;
            for (int i = 0; i < N; i++) {
                if (c[i] < 0.0f) continue; /* listed */
                if (tailv < 0.0f) tailv = xt[i];
                same &= xt[i] == tailv;
            }
            CHECK(same);
            CHECK(uhlm_payload_decode(&t, buf, (size_t)nb, N, xt2, &err) == 0);
            CHECK(memcmp(xt, xt2, sizeof xt) == 0);
        }
    }

    /* one-hot x (greedy-like) survives every encoding exactly */
    float oh[N] = {0};
    oh[77] = 1.0f;
    uhlm_payload_spec specs[4] = {f32, f16, {UHLM_PAYLOAD_TOPK, 1, 8}, {UHLM_PAYLOAD_TOPK, 16, 16}};
    for (int s = 0; s < 4; s++) {
        nb = uhlm_payload_encode(&specs[s], oh, N, buf, sizeof buf, &err);
        CHECK(uhlm_payload_decode(&specs[s], buf, (size_t)nb, N, xt, &err) == 0);
        CHECKF(xt[77] == 1.0f && sum(xt, N) == 1.0, "spec %d", s);
    }
    /* largest remainder: three equal thirds quantise to 85+85+85 = 255, nothing leaks */
    float th[4] = {1.0f / 3, 1.0f / 3, 1.0f / 3, 0.0f};
    uhlm_payload_spec t3 = {UHLM_PAYLOAD_TOPK, 3, 8};
    nb = uhlm_payload_encode(&t3, th, 4, buf, sizeof buf, &err);
    CHECK(uhlm_payload_decode(&t3, buf, (size_t)nb, 4, xt, &err) == 0);
    CHECK(xt[3] == 0.0f && fabs(xt[0] - 1.0 / 3) < 1e-7);
}

static void test_topk_layout(void) {
    /* V = 8 (3 index bits), K = 2, 8-bit q: entries in index order, LSB first */
    float x[8] = {0.05f, 0.6f, 0.05f, 0.05f, 0.05f, 0.05f, 0.1f, 0.05f};
    uhlm_payload_spec t = {UHLM_PAYLOAD_TOPK, 2, 8};
    uint8_t buf[8];
    uhlm_error err;
    CHECK(uhlm_payload_encode(&t, x, 8, buf, sizeof buf, &err) == 3);
    /* entries: (1, round(0.6*255)=153) (6, round(0.1*255)=26 after largest remainder) */
    uint32_t bits = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16;
    CHECK((bits & 7) == 1);
    CHECK(((bits >> 3) & 255) == 153);
    CHECK(((bits >> 11) & 7) == 6);
    CHECK(((bits >> 14) & 255) == 26 || ((bits >> 14) & 255) == 25);
    CHECK((bits >> 22) == 0);
    float xt[8];
    CHECK(uhlm_payload_decode(&t, buf, 3, 8, xt, &err) == 0);
    double tail = (1.0 - (153.0 + ((bits >> 14) & 255)) / 255.0) / 6.0;
    CHECK(fabs(xt[0] - tail) < 1e-7 && fabs(xt[1] - 153.0 / 255) < 1e-7);

    /* malformed topk payloads are refused without touching x */
    uint8_t b2[3];
    memcpy(b2, buf, 3);
    b2[2] |= 0x80; /* padding bit */
    CHECK(uhlm_payload_decode(&t, b2, 3, 8, xt, &err) != 0);
    CHECK(strstr(err.msg, "padding") != NULL);
    /* second index equal to the first */
    uint32_t dup = (bits & ~(7u << 11)) | (1u << 11);
    uint8_t b3[3] = {(uint8_t)dup, (uint8_t)(dup >> 8), (uint8_t)(dup >> 16)};
    CHECK(uhlm_payload_decode(&t, b3, 3, 8, xt, &err) != 0);
    /* q sum above 1: 255 + 255 */
    uint32_t over = 1u | 255u << 3 | 6u << 11 | 255u << 14;
    uint8_t b4[3] = {(uint8_t)over, (uint8_t)(over >> 8), (uint8_t)(over >> 16)};
    CHECK(uhlm_payload_decode(&t, b4, 3, 8, xt, &err) != 0);
    /* index out of range for V = 6 (3 bits allow 7) */
    uhlm_payload_spec t6 = {UHLM_PAYLOAD_TOPK, 2, 8};
    uint32_t oor = 1u | 10u << 3 | 7u << 11 | 10u << 14;
    uint8_t b5[3] = {(uint8_t)oor, (uint8_t)(oor >> 8), (uint8_t)(oor >> 16)};
    CHECK(uhlm_payload_decode(&t6, b5, 3, 6, xt, &err) != 0);
    CHECK(uhlm_payload_decode(&t, buf, 2, 8, xt, &err) != 0); /* short */
    CHECK(uhlm_payload_decode(&t, buf, 4, 8, xt, &err) != 0); /* long */
    /* K = V = 2 (1 index bit) with both q zero has no mass; with K < V it is uniform */
    uhlm_payload_spec tall = {UHLM_PAYLOAD_TOPK, 2, 8};
    uint32_t zero = 1u << 9; /* (0, q 0) (1, q 0) */
    uint8_t b6[3] = {(uint8_t)zero, (uint8_t)(zero >> 8), 0};
    CHECK(uhlm_payload_bytes(&tall, 2) == 3);
    CHECK(uhlm_payload_decode(&tall, b6, 3, 2, xt, &err) != 0);
    uhlm_payload_spec t1 = {UHLM_PAYLOAD_TOPK, 1, 8};
    uint8_t b7[2] = {0, 0}; /* (0, q 0) over V = 3 */
    CHECK(uhlm_payload_decode(&t1, b7, 2, 3, xt, &err) == 0 && xt[0] == 0.0f && xt[1] == 0.5f &&
          xt[2] == 0.5f);
}

static void test_dense_refusals(void) {
    enum { N = 4 };
    uhlm_payload_spec f32 = {UHLM_PAYLOAD_F32, 0, 0}, f16 = {UHLM_PAYLOAD_F16, 0, 0};
    float x[N] = {0.25f, 0.25f, 0.25f, 0.25f}, xt[N];
    uint8_t buf[16];
    uhlm_error err;
    float bad[4][N] = {{0.5f, 0.5f, 0.5f, 0.5f},
                       {NAN, 0.5f, 0.25f, 0.25f},
                       {-0.25f, 0.5f, 0.5f, 0.25f},
                       {INFINITY, 0.0f, 0.0f, 0.0f}};
    for (int b = 0; b < 4; b++) {
        /* bypass the encoder's own check by writing the floats directly */
        for (int i = 0; i < N; i++) memcpy(buf + 4 * i, &bad[b][i], 4);
        CHECKF(uhlm_payload_decode(&f32, buf, 16, N, xt, &err) != 0, "bad %d", b);
        CHECK(uhlm_payload_encode(&f32, bad[b], N, buf, sizeof buf, &err) < 0 || b == 0);
    }
    CHECK(uhlm_payload_encode(&f16, x, N, buf, sizeof buf, &err) == 8);
    CHECK(uhlm_payload_decode(&f16, buf, 8, N, xt, &err) == 0 && xt[2] == 0.25f);
    buf[1] = 0x7c; /* +inf in f16 */
    buf[0] = 0x00;
    CHECK(uhlm_payload_decode(&f16, buf, 8, N, xt, &err) != 0);
    CHECK(uhlm_payload_decode(&f16, buf, 7, N, xt, &err) != 0);
}

int main(void) {
    test_parse();
    test_sizes();
    test_roundtrip();
    test_topk_layout();
    test_dense_refusals();
    return check_report();
}
