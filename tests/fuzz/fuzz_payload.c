/* fuzz_payload.c: libFuzzer target for the payload codec (uhlm/payload.h), which a server runs
 * on untrusted bytes.
 *
 * Input: byte 0 picks the encoding (f32, f16, topk:K:8, topk:K:16), bytes 1-2 the vocabulary
 * size V (1..4096) and bytes 3-4 K; the rest is used twice:
 *  1. as an encoded payload to decode (trimmed or zero-padded to the expected length every
 *     other time, so both the length check and the body are reached). An accepted payload must
 *     decode to V finite, non-negative values summing to 1 (the decoder's promise to the
 *     verifier), and re-encoding a topk decode must be accepted again;
 *  2. as V weights of a distribution x to encode: the encoding must have exactly
 *     uhlm_payload_bytes bytes and decode again, to a distribution whose top-K entries are
 *     those of x (dense encodings: values within the format's rounding).
 * Also: the text of the input through uhlm_payload_parse / uhlm_payload_format.
 * fuzz-max-len: 16384
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds: valid encodings of every kind. */
#include <math.h>

#include "fuzz_common.h"
#include "uhlm/payload.h"

static int pick(const uint8_t *d, size_t n, uhlm_payload_spec *s, int *V) {
    if (n < 5) return -1;
    *V = 1 + (int)((d[1] | d[2] << 8) % 4096);
    int k = 1 + (int)((d[3] | d[4] << 8) % (unsigned)*V);
    switch (d[0] % 4) {
    case 0: *s = (uhlm_payload_spec){UHLM_PAYLOAD_F32, 0, 0}; break;
    case 1: *s = (uhlm_payload_spec){UHLM_PAYLOAD_F16, 0, 0}; break;
    case 2: *s = (uhlm_payload_spec){UHLM_PAYLOAD_TOPK, k, 8}; break;
    default: *s = (uhlm_payload_spec){UHLM_PAYLOAD_TOPK, k, 16}; break;
    }
    return 0;
}

#ifndef UHLM_FUZZ_SEEDGEN

static void check_dist(const float *x, int V, const char *what) {
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        fuzz_require(isfinite(x[i]) && x[i] >= 0.0f, what);
        sum += x[i];
    }
    fuzz_require(fabs(sum - 1.0) < 1e-3, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the parser on the raw text */
    char text[64];
    size_t tn = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, tn);
    text[tn] = '\0';
    uhlm_payload_spec ps;
    uhlm_error err;
    if (uhlm_payload_parse(text, &ps, &err) == 0) {
        char back[64];
        fuzz_require(uhlm_payload_format(&ps, back, sizeof back) > 0, "format");
        uhlm_payload_spec again;
        fuzz_require(uhlm_payload_parse(back, &again, &err) == 0 && again.kind == ps.kind &&
                         again.k == ps.k && again.prob_bits == ps.prob_bits,
                     "format does not parse back");
    }

    uhlm_payload_spec s;
    int V;
    if (pick(data, size, &s, &V) != 0) return 0;
    const uint8_t *body = data + 5;
    size_t blen = size - 5;
    size_t need = uhlm_payload_bytes(&s, V);
    float *x = malloc(sizeof(float) * (size_t)V), *y = malloc(sizeof(float) * (size_t)V);
    uint8_t *enc = malloc(need + 1), *enc2 = malloc(need + 1);
    if (!x || !y || !enc || !enc2) abort();

    /* 1. decode: as given, or fitted to the expected length */
    const uint8_t *in = body;
    size_t in_len = blen;
    uint8_t *fit = NULL;
    if (data[0] & 4) {
        fit = calloc(need ? need : 1, 1);
        if (!fit) abort();
        memcpy(fit, body, blen < need ? blen : need);
        in = fit;
        in_len = need;
    }
    if (uhlm_payload_decode(&s, in, in_len, V, x, &err) == 0) {
        fuzz_require(in_len == need, "decode accepted a wrong length");
        check_dist(x, V, "decode gave no distribution");
        if (s.kind == UHLM_PAYLOAD_TOPK) {
            long n = uhlm_payload_encode(&s, x, V, enc, need, &err);
            fuzz_require(n == (long)need, "re-encoding a decoded topk failed");
            fuzz_require(uhlm_payload_decode(&s, enc, need, V, y, &err) == 0,
                         "re-encoded topk does not decode");
        }
    }
    free(fit);

    /* 2. encode: weights from the body */
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        x[i] = blen ? (float)body[(size_t)i % blen] : 1.0f;
        sum += x[i];
    }
    if (sum == 0.0) x[0] = 1.0f, sum = 1.0;
    for (int i = 0; i < V; i++) x[i] = (float)(x[i] / sum);
    long n = uhlm_payload_encode(&s, x, V, enc, need, &err);
    fuzz_require(n == (long)need, "encoding a distribution failed");
    fuzz_require(uhlm_payload_encode(&s, x, V, enc2, need ? need - 1 : 0, &err) < 0 || need == 0,
                 "encode into a short buffer");
    int dec = uhlm_payload_decode(&s, enc, need, V, y, &err);
    /* a topk of K < V whose mass rounds to zero is still a valid payload */
    fuzz_require(dec == 0, "an encoding does not decode");
    check_dist(y, V, "decode of an encoding gave no distribution");
    if (s.kind == UHLM_PAYLOAD_F32)
        for (int i = 0; i < V; i++) fuzz_require(fabsf(y[i] - x[i]) <= 1e-5f, "f32 round trip");
    if (s.kind == UHLM_PAYLOAD_F16)
        for (int i = 0; i < V; i++) fuzz_require(fabsf(y[i] - x[i]) <= 2e-3f, "f16 round trip");
    free(x);
    free(y);
    free(enc);
    free(enc2);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    /* kind selector, V, K: then a valid encoding of a skewed distribution */
    static const struct {
        uint8_t sel;
        int V, K;
    } cases[] = {{0, 8, 1},  {1, 8, 1},     {2, 32, 4},   {3, 32, 4},  {2, 512, 16},
                 {3, 512, 512}, {6, 512, 40}, {7, 100, 99}, {4, 3, 1},   {5, 16, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t hdr[5] = {cases[c].sel, (uint8_t)((cases[c].V - 1) & 0xff),
                          (uint8_t)((cases[c].V - 1) >> 8), (uint8_t)((cases[c].K - 1) & 0xff),
                          (uint8_t)((cases[c].K - 1) >> 8)};
        uhlm_payload_spec s;
        int V;
        if (pick(hdr, 5, &s, &V) != 0) return 1;
        float *x = malloc(sizeof(float) * (size_t)V);
        size_t need = uhlm_payload_bytes(&s, V);
        uint8_t *buf = malloc(5 + need);
        if (!x || !buf) return 1;
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += x[i] = 1.0f / (float)(1 + (i * 7) % 13);
        for (int i = 0; i < V; i++) x[i] = (float)(x[i] / sum);
        uhlm_error err;
        memcpy(buf, hdr, 5);
        if (uhlm_payload_encode(&s, x, V, buf + 5, need, &err) != (long)need) {
            fprintf(stderr, "seed %zu: %s\n", c, err.msg);
            return 1;
        }
        char name[32];
        snprintf(name, sizeof name, "seed-%02zu", c);
        fuzz_write_seed(argv[1], name, buf, 5 + need);
        free(x);
        free(buf);
    }
    fuzz_write_seed(argv[1], "text-topk", "topk:12:16", 10);
    return 0;
}

#endif
