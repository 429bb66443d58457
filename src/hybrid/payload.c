/* payload.c: f32 / f16 / top-k encodings of x and their exact reconstruction (payload.h). */
#include "uhlm/payload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels/quant.h"

#define F32_TOL 1e-3
#define F16_TOL 1e-2
#define HEAP_STACK 256

int uhlm_token_bits(int n_vocab) {
    int b = 0;
    while (b < 31 && (1L << b) < (long)n_vocab) b++;
    return b;
}

int uhlm_payload_parse(const char *s, uhlm_payload_spec *out, uhlm_error *err) {
    if (!strcmp(s, "f32")) {
        *out = (uhlm_payload_spec){UHLM_PAYLOAD_F32, 0, 0};
        return 0;
    }
    if (!strcmp(s, "f16")) {
        *out = (uhlm_payload_spec){UHLM_PAYLOAD_F16, 0, 0};
        return 0;
    }
    if (!strncmp(s, "topk:", 5)) {
        char *end = NULL;
        long k = strtol(s + 5, &end, 10);
        long bits = 8;
        if (end != s + 5 && *end == ':') {
            const char *b = end + 1;
            bits = strtol(b, &end, 10);
            if (end == b) bits = -1;
        }
        if (end == s + 5 || *end != '\0' || k < 1 || k > (1L << 22) || (bits != 8 && bits != 16))
            return uhlm_set_error(err, "bad payload '%s' (expected topk:K or topk:K:8|16, K >= 1)",
                                  s);
        *out = (uhlm_payload_spec){UHLM_PAYLOAD_TOPK, (int)k, (int)bits};
        return 0;
    }
    return uhlm_set_error(err, "unknown payload '%s' (expected f32, f16 or topk:K[:8|16])", s);
}

int uhlm_payload_format(const uhlm_payload_spec *s, char *buf, size_t cap) {
    switch (s->kind) {
    case UHLM_PAYLOAD_F32: return snprintf(buf, cap, "f32");
    case UHLM_PAYLOAD_F16: return snprintf(buf, cap, "f16");
    default: return snprintf(buf, cap, "topk:%d:%d", s->k, s->prob_bits);
    }
}

int uhlm_payload_check(const uhlm_payload_spec *s, int n_vocab, uhlm_error *err) {
    if (n_vocab < 1) return uhlm_set_error(err, "payload: vocabulary size %d", n_vocab);
    switch (s->kind) {
    case UHLM_PAYLOAD_F32:
    case UHLM_PAYLOAD_F16:
        if (s->k != 0 || s->prob_bits != 0)
            return uhlm_set_error(err, "payload: dense encodings take no K or bits");
        return 0;
    case UHLM_PAYLOAD_TOPK:
        if (s->k < 1 || s->k > n_vocab)
            return uhlm_set_error(err, "payload: topk K = %d is outside [1, %d] (the vocabulary)",
                                  s->k, n_vocab);
        if (s->prob_bits != 8 && s->prob_bits != 16)
            return uhlm_set_error(err, "payload: topk probability bits %d (8 or 16)", s->prob_bits);
        return 0;
    }
    return uhlm_set_error(err, "payload: unknown kind %d", (int)s->kind);
}

uint64_t uhlm_payload_bits(const uhlm_payload_spec *s, int n_vocab) {
    switch (s->kind) {
    case UHLM_PAYLOAD_F32: return 32u * (uint64_t)n_vocab;
    case UHLM_PAYLOAD_F16: return 16u * (uint64_t)n_vocab;
    default: return (uint64_t)s->k * (uint64_t)(uhlm_token_bits(n_vocab) + s->prob_bits);
    }
}

size_t uhlm_payload_bytes(const uhlm_payload_spec *s, int n_vocab) {
    return (size_t)((uhlm_payload_bits(s, n_vocab) + 7) / 8);
}

/* ---- bit streams (LSB first) ---- */
typedef struct {
    uint8_t *p;
    uint64_t bit;
} bitw;

static void put_bits(bitw *w, uint32_t v, int n) {
    for (int i = 0; i < n; i++, w->bit++)
        if (v >> i & 1u) w->p[w->bit >> 3] |= (uint8_t)(1u << (w->bit & 7));
}

static uint32_t get_bits(const uint8_t *p, uint64_t *bit, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++, (*bit)++) v |= (uint32_t)(p[*bit >> 3] >> (*bit & 7) & 1u) << i;
    return v;
}

/* ---- top-K selection: most probable first, lower index on ties ---- */
static int worse(const float *x, int a, int b) { return x[a] < x[b] || (x[a] == x[b] && a > b); }

static void sift(const float *x, int *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(x, h[l], h[m])) m = l;
        if (r < n && worse(x, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double rem;
    int slot;
} rem_slot;

/* larger remainder first; slot (index order) breaks ties so the result is deterministic */
static int cmp_rem_desc(const void *a, const void *b) {
    const rem_slot *x = a, *y = b;
    if (x->rem > y->rem) return -1;
    if (x->rem < y->rem) return 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

static long encode_topk(const uhlm_payload_spec *s, const float *x, int n, uint8_t *out,
                        size_t nbytes, uhlm_error *err) {
    int k = s->k;
    int stack_h[HEAP_STACK];
    int *h = k <= HEAP_STACK ? stack_h : malloc(sizeof(int) * (size_t)k);
    uint32_t *q = malloc(sizeof(uint32_t) * (size_t)k);
    rem_slot *rs = malloc(sizeof(rem_slot) * (size_t)k);
    long rc = -1;
    if (!h || !q || !rs) {
        uhlm_set_error(err, "payload: out of memory (topk %d)", k);
        goto done;
    }
    for (int i = 0; i < k; i++) h[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) sift(x, h, k, i);
    for (int i = k; i < n; i++)
        if (worse(x, h[0], i)) {
            h[0] = i;
            sift(x, h, k, 0);
        }
    qsort(h, (size_t)k, sizeof(int), cmp_int);
    /* largest remainder: Σq equals the rounded total, so the tail mass R is as right as the
     * quantum allows instead of absorbing K rounding errors */
    const double Q = (double)((1u << s->prob_bits) - 1u);
    double tot = 0.0;
    long sumq = 0;
    for (int j = 0; j < k; j++) {
        double f = (double)x[h[j]] * Q;
        double fl = floor(f);
        q[j] = (uint32_t)fl;
        sumq += (long)fl;
        rs[j] = (rem_slot){f - fl, j};
        tot += x[h[j]];
    }
    long target = lround(tot * Q);
    if (target > (long)Q) target = (long)Q;
    long extra = target - sumq;
    qsort(rs, (size_t)k, sizeof *rs, cmp_rem_desc);
    for (int j = 0; extra > 0 && j < k; j++, extra--) q[rs[j].slot]++;
    for (int j = k - 1; extra < 0 && j >= 0; j--)
        if (q[rs[j].slot] > 0) {
            q[rs[j].slot]--;
            extra++;
        }
    memset(out, 0, nbytes);
    bitw w = {out, 0};
    int ib = uhlm_token_bits(n);
    for (int j = 0; j < k; j++) {
        put_bits(&w, (uint32_t)h[j], ib);
        put_bits(&w, q[j], s->prob_bits);
    }
    rc = (long)nbytes;
done:
    if (h != stack_h) free(h);
    free(q);
    free(rs);
    return rc;
}

long uhlm_payload_encode(const uhlm_payload_spec *s, const float *x, int n_vocab, uint8_t *out,
                         size_t cap, uhlm_error *err) {
    if (uhlm_payload_check(s, n_vocab, err) != 0) return -1;
    size_t nbytes = uhlm_payload_bytes(s, n_vocab);
    if (cap < nbytes)
        return uhlm_set_error(err, "payload: buffer of %zu bytes, need %zu", cap, nbytes);
    for (int i = 0; i < n_vocab; i++)
        if (!(x[i] >= 0.0f) || !isfinite(x[i]))
            return uhlm_set_error(err, "payload: x[%d] = %g is not a probability", i, (double)x[i]);
    switch (s->kind) {
    case UHLM_PAYLOAD_F32:
        for (int i = 0; i < n_vocab; i++) {
            uint32_t v;
            memcpy(&v, &x[i], 4);
            for (int b = 0; b < 4; b++) out[4 * (size_t)i + b] = (uint8_t)(v >> (8 * b));
        }
        return (long)nbytes;
    case UHLM_PAYLOAD_F16:
        for (int i = 0; i < n_vocab; i++) {
            uint16_t v = uhlm_f32_to_f16(x[i]);
            out[2 * (size_t)i] = (uint8_t)v;
            out[2 * (size_t)i + 1] = (uint8_t)(v >> 8);
        }
        return (long)nbytes;
    default: return encode_topk(s, x, n_vocab, out, nbytes, err);
    }
}

static int finish_dense(float *x, int n, double tol, const char *what, uhlm_error *err) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] >= 0.0f) || !isfinite(x[i]))
            return uhlm_set_error(err, "payload %s: x[%d] = %g is not a probability", what, i,
                                  (double)x[i]);
        sum += x[i];
    }
    if (!(fabs(sum - 1.0) <= tol))
        return uhlm_set_error(err, "payload %s: probabilities sum to %.9g, not 1 (tolerance %g)",
                              what, sum, tol);
    for (int i = 0; i < n; i++) x[i] = (float)((double)x[i] / sum);
    return 0;
}

int uhlm_payload_decode(const uhlm_payload_spec *s, const uint8_t *in, size_t len, int n_vocab,
                        float *x, uhlm_error *err) {
    if (uhlm_payload_check(s, n_vocab, err) != 0) return -1;
    size_t nbytes = uhlm_payload_bytes(s, n_vocab);
    if (len != nbytes)
        return uhlm_set_error(err, "payload: %zu bytes, expected %zu for V = %d", len, nbytes,
                              n_vocab);
    switch (s->kind) {
    case UHLM_PAYLOAD_F32:
        for (int i = 0; i < n_vocab; i++) {
            const uint8_t *p = in + 4 * (size_t)i;
            uint32_t v =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&x[i], &v, 4);
        }
        return finish_dense(x, n_vocab, F32_TOL, "f32", err);
    case UHLM_PAYLOAD_F16:
        for (int i = 0; i < n_vocab; i++)
            x[i] = uhlm_f16_to_f32((uint16_t)(in[2 * (size_t)i] | in[2 * (size_t)i + 1] << 8));
        return finish_dense(x, n_vocab, F16_TOL, "f16", err);
    default: break;
    }
    int k = s->k, ib = uhlm_token_bits(n_vocab);
    const uint32_t Q = (1u << s->prob_bits) - 1u;
    uint64_t bit = 0, sumq = 0;
    long prev = -1;
    /* first pass validates and sums, so x is only written for a valid payload */
    for (int j = 0; j < k; j++) {
        uint32_t idx = get_bits(in, &bit, ib);
        uint32_t q = get_bits(in, &bit, s->prob_bits);
        if (idx >= (uint32_t)n_vocab || (long)idx <= prev)
            return uhlm_set_error(err,
                                  "payload topk: entry %d has index %u (must be < %d and increase)",
                                  j, idx, n_vocab);
        prev = (long)idx;
        sumq += q;
    }
    while (bit < 8 * (uint64_t)nbytes)
        if (get_bits(in, &bit, 1)) return uhlm_set_error(err, "payload topk: nonzero padding bits");
    if (sumq > Q)
        return uhlm_set_error(err, "payload topk: probabilities sum to %llu/%u > 1",
                              (unsigned long long)sumq, Q);
    if (k == n_vocab && sumq == 0)
        return uhlm_set_error(err, "payload topk: K = V and every probability is 0");
    double scale = k == n_vocab ? 1.0 / (double)sumq : 1.0 / (double)Q;
    float tail = k < n_vocab ? (float)((1.0 - (double)sumq / Q) / (double)(n_vocab - k)) : 0.0f;
    for (int i = 0; i < n_vocab; i++) x[i] = tail;
    bit = 0;
    for (int j = 0; j < k; j++) {
        uint32_t idx = get_bits(in, &bit, ib);
        uint32_t q = get_bits(in, &bit, s->prob_bits);
        x[idx] = (float)(q * scale);
    }
    return 0;
}
