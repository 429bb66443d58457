/* wire.c: frame header, message codecs and the output buffer (see uhlm/wire.h and
 * docs/protocol.md).
 *
 * Decoding walks the payload front to back through a bounds-checked reader; the first
 * violation wins, so each malformed input maps to exactly one code. Encoding writes the
 * payload and then runs the decoder over it: the encoder thus cannot drift from the decoder,
 * and a sender learns about a bad message (token id >= vocab, K > vocab...) before the peer
 * does. The extra pass reads the payload once more, which is noise next to sending it. */
#include "uhlm/wire.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x)                        \
    do {                              \
        int rc_ = (x);                \
        if (rc_ != 0) return rc_;     \
    } while (0)

/* Rounding slack for VERDICT probabilities: the codec's reconstruction may land a hair
 * above 1 without anything being wrong. */
#define PROB_SLACK 1e-3f

static int fail(uhlm_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(uhlm_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -code;
}

/* ---------- names ---------- */

const char *uhlm_wire_type_name(unsigned type) {
    static const char *const names[] = {"?",     "HELLO",    "WELCOME", "OPEN",      "OPENED",
                                        "VERIFY", "VERDICT", "GENERATE", "GENERATED", "STATS_REQ",
                                        "STATS", "CLOSE",    "ERROR",   "PING",      "PONG"};
    return type <= UHLM_WIRE_TYPE_MAX ? names[type] : "?";
}

const char *uhlm_wire_code_name(unsigned code) {
    static const char *const names[] = {
        "OK",       "BAD_FRAME", "BAD_MAGIC",   "BAD_VERSION",    "TOO_LARGE",
        "UNKNOWN_TYPE", "NOT_OPEN", "BAD_TOKEN", "BAD_PROBS",     "BAD_PAYLOAD",
        "CTX_FULL", "AUTH",      "BUSY",        "VOCAB_MISMATCH", "TIMEOUT",
        "INTERNAL", "SHUTTING_DOWN", "DESYNC",  "BAD_STATE"};
    return code <= UHLM_WIRE_E_MAX ? names[code] : "?";
}

/* ---------- limits ---------- */

typedef struct lims {
    uint32_t max_frame, max_tokens, vocab;
} lims;

static lims eff_limits(const uhlm_wire_limits *l) {
    lims r = {UHLM_WIRE_MAX_FRAME, UHLM_WIRE_MAX_TOKENS, UHLM_WIRE_MAX_VOCAB};
    if (l) {
        if (l->max_frame && l->max_frame < r.max_frame) r.max_frame = l->max_frame;
        if (l->max_tokens && l->max_tokens < r.max_tokens) r.max_tokens = l->max_tokens;
        if (l->vocab_size && l->vocab_size < r.vocab) r.vocab = l->vocab_size;
    }
    return r;
}

/* ---------- little-endian scalars ---------- */

static uint16_t ld16(const uint8_t *q) { return (uint16_t)(q[0] | q[1] << 8); }
static uint32_t ld32(const uint8_t *q) {
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}
static uint64_t ld64(const uint8_t *q) { return (uint64_t)ld32(q) | (uint64_t)ld32(q + 4) << 32; }
static void st16(uint8_t *q, uint16_t v) {
    q[0] = (uint8_t)v;
    q[1] = (uint8_t)(v >> 8);
}
static void st32(uint8_t *q, uint32_t v) {
    for (int i = 0; i < 4; i++) q[i] = (uint8_t)(v >> (8 * i));
}
static void st64(uint8_t *q, uint64_t v) {
    for (int i = 0; i < 8; i++) q[i] = (uint8_t)(v >> (8 * i));
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---------- reader ---------- */

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    const char *what; /* message name for errors */
    lims lim;
} rd;

static int need(rd *r, size_t k, const char *field, uhlm_error *err) {
    if (r->n - r->off < k)
        return fail(err, UHLM_WIRE_E_BAD_FRAME,
                    "%s: truncated in %s at byte %zu (need %zu, have %zu)", r->what, field,
                    r->off, k, r->n - r->off);
    return 0;
}

static int rd_u8(rd *r, const char *f, uint8_t *v, uhlm_error *err) {
    TRY(need(r, 1, f, err));
    *v = r->p[r->off++];
    return 0;
}
static int rd_u16(rd *r, const char *f, uint16_t *v, uhlm_error *err) {
    TRY(need(r, 2, f, err));
    *v = ld16(r->p + r->off);
    r->off += 2;
    return 0;
}
static int rd_u32(rd *r, const char *f, uint32_t *v, uhlm_error *err) {
    TRY(need(r, 4, f, err));
    *v = ld32(r->p + r->off);
    r->off += 4;
    return 0;
}
static int rd_u64(rd *r, const char *f, uint64_t *v, uhlm_error *err) {
    TRY(need(r, 8, f, err));
    *v = ld64(r->p + r->off);
    r->off += 8;
    return 0;
}
static int rd_f32(rd *r, const char *f, float *v, uhlm_error *err) {
    uint32_t u;
    TRY(rd_u32(r, f, &u, err));
    *v = bits_f32(u);
    return 0;
}

/* A u32 count then count token ids, each < vocab. */
static int rd_tokens(rd *r, const char *f, uint32_t min, uhlm_wire_tokens *t, uhlm_error *err) {
    uint32_t cnt;
    TRY(rd_u32(r, f, &cnt, err));
    if (cnt < min)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s: %s needs at least %u token(s)", r->what,
                    f, (unsigned)min);
    if (cnt > r->lim.max_tokens)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "%s: %s count %u exceeds the limit of %u",
                    r->what, f, (unsigned)cnt, (unsigned)r->lim.max_tokens);
    if ((r->n - r->off) / 4 < cnt)
        return fail(err, UHLM_WIRE_E_BAD_FRAME,
                    "%s: %s count %u exceeds the %zu bytes left in the payload", r->what, f,
                    (unsigned)cnt, r->n - r->off);
    const uint8_t *raw = r->p + r->off;
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t id = ld32(raw + 4 * (size_t)i);
        if (id >= r->lim.vocab)
            return fail(err, UHLM_WIRE_E_BAD_TOKEN, "%s: %s[%u] = %u is not below vocab size %u",
                        r->what, f, (unsigned)i, (unsigned)id, (unsigned)r->lim.vocab);
    }
    t->ids = NULL;
    t->raw = raw;
    t->n = cnt;
    r->off += 4 * (size_t)cnt;
    return 0;
}

static int rd_token(rd *r, const char *f, uint32_t *v, uhlm_error *err) {
    TRY(rd_u32(r, f, v, err));
    if (*v >= r->lim.vocab)
        return fail(err, UHLM_WIRE_E_BAD_TOKEN, "%s: %s = %u is not below vocab size %u",
                    r->what, f, (unsigned)*v, (unsigned)r->lim.vocab);
    return 0;
}

/* u16 length then bytes. Text fields (text != 0) may not contain NUL, so that a receiver can
 * copy them into C strings without silent truncation. */
static int rd_blob16(rd *r, const char *f, uint32_t max, int text, const uint8_t **p,
                     uint32_t *len, uhlm_error *err) {
    uint16_t l;
    TRY(rd_u16(r, f, &l, err));
    if (l > max)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "%s: %s length %u exceeds the limit of %u",
                    r->what, f, (unsigned)l, (unsigned)max);
    TRY(need(r, l, f, err));
    if (text && memchr(r->p + r->off, 0, l))
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s: %s contains a NUL byte", r->what, f);
    *p = r->p + r->off;
    *len = l;
    r->off += l;
    return 0;
}

static int rd_str16(rd *r, const char *f, uint32_t max, uhlm_wire_str *s, uhlm_error *err) {
    const uint8_t *p = NULL;
    TRY(rd_blob16(r, f, max, 1, &p, &s->len, err));
    s->p = (const char *)p;
    return 0;
}

static int rd_end(rd *r, uhlm_error *err) {
    if (r->off != r->n)
        return fail(err, UHLM_WIRE_E_BAD_FRAME, "%s: %zu trailing byte(s) after the message",
                    r->what, r->n - r->off);
    return 0;
}

static int no_flags(rd *r, const char *f, uint32_t v, uint32_t allowed, uhlm_error *err) {
    if (v & ~allowed)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s: unknown %s bits 0x%x", r->what, f,
                    (unsigned)(v & ~allowed));
    return 0;
}

static int in_range(rd *r, const char *f, uint64_t v, uint64_t lo, uint64_t hi, uhlm_error *err) {
    if (v < lo || v > hi)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s: %s = %llu is outside [%llu, %llu]",
                    r->what, f, (unsigned long long)v, (unsigned long long)lo,
                    (unsigned long long)hi);
    return 0;
}

static int prob(rd *r, const char *f, float v, uhlm_error *err) {
    if (!isfinite(v) || v < 0.0f || v > 1.0f + PROB_SLACK)
        return fail(err, UHLM_WIRE_E_BAD_PROBS, "%s: %s = %g is not a probability", r->what, f,
                    (double)v);
    return 0;
}

/* pos + extra must stay a valid int position. */
static int ctx_fits(rd *r, uint32_t pos, uint64_t extra, uhlm_error *err) {
    if ((uint64_t)pos + extra > UHLM_WIRE_MAX_CTX)
        return fail(err, UHLM_WIRE_E_CTX_FULL, "%s: position %llu is beyond any context",
                    r->what, (unsigned long long)((uint64_t)pos + extra));
    return 0;
}

static int rd_cost(rd *r, uhlm_wire_cost *c, uhlm_error *err) {
    TRY(rd_u64(r, "llm_ns", &c->llm_ns, err));
    TRY(rd_u32(r, "forward_calls", &c->forward_calls, err));
    TRY(rd_u32(r, "seq_tokens", &c->seq_tokens, err));
    TRY(rd_u32(r, "batch_size", &c->batch_size, err));
    TRY(rd_u32(r, "batch_tokens", &c->batch_tokens, err));
    return 0;
}

static rd rd_init(const uint8_t *p, size_t n, const uhlm_wire_limits *lim, unsigned type) {
    rd r = {p, n, 0, uhlm_wire_type_name(type), eff_limits(lim)};
    return r;
}

/* ---------- decoders ---------- */

int uhlm_wire_decode_hello(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_hello *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_HELLO);
    uint16_t flags;
    const uint8_t *auth = NULL;
    memset(m, 0, sizeof *m);
    TRY(rd_u16(&r, "version", &m->version, err));
    if (m->version == 0) return fail(err, UHLM_WIRE_E_BAD_VERSION, "HELLO: version 0");
    TRY(rd_u16(&r, "flags", &flags, err));
    TRY(no_flags(&r, "flags", flags, 0, err));
    TRY(rd_u64(&r, "fingerprint", &m->fingerprint, err));
    TRY(rd_u32(&r, "vocab_size", &m->vocab_size, err));
    TRY(in_range(&r, "vocab_size", m->vocab_size, 1, UHLM_WIRE_MAX_VOCAB, err));
    TRY(rd_blob16(&r, "auth", UHLM_WIRE_MAX_AUTH, 0, &auth, &m->auth.len, err));
    m->auth.p = auth;
    TRY(rd_str16(&r, "client", UHLM_WIRE_MAX_NAME, &m->client, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_welcome(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                             uhlm_wire_welcome *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_WELCOME);
    uint16_t flags;
    memset(m, 0, sizeof *m);
    TRY(rd_u16(&r, "version", &m->version, err));
    if (m->version == 0) return fail(err, UHLM_WIRE_E_BAD_VERSION, "WELCOME: version 0");
    TRY(rd_u16(&r, "flags", &flags, err));
    TRY(no_flags(&r, "flags", flags, 0, err));
    TRY(rd_u64(&r, "fingerprint", &m->fingerprint, err));
    TRY(rd_u32(&r, "vocab_size", &m->vocab_size, err));
    TRY(in_range(&r, "vocab_size", m->vocab_size, 1, UHLM_WIRE_MAX_VOCAB, err));
    TRY(rd_u32(&r, "n_ctx", &m->n_ctx, err));
    TRY(in_range(&r, "n_ctx", m->n_ctx, 1, UHLM_WIRE_MAX_CTX, err));
    TRY(rd_u32(&r, "max_sessions", &m->max_sessions, err));
    TRY(in_range(&r, "max_sessions", m->max_sessions, 1, UINT32_MAX, err));
    TRY(rd_u32(&r, "max_frame", &m->max_frame, err));
    TRY(in_range(&r, "max_frame", m->max_frame, UHLM_WIRE_MIN_FRAME, UHLM_WIRE_MAX_FRAME, err));
    TRY(rd_u32(&r, "max_batch_tokens", &m->max_batch_tokens, err));
    TRY(in_range(&r, "max_batch_tokens", m->max_batch_tokens, 1, UHLM_WIRE_MAX_TOKENS, err));
    TRY(rd_u32(&r, "idle_timeout_ms", &m->idle_timeout_ms, err));
    TRY(rd_u32(&r, "payload_kinds", &m->payload_kinds, err));
    TRY(no_flags(&r, "payload_kinds", m->payload_kinds, UHLM_WIRE_KINDS_ALL, err));
    if (m->payload_kinds == 0)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "WELCOME: no payload kind accepted");
    TRY(rd_u64(&r, "nonce", &m->nonce, err));
    TRY(rd_str16(&r, "model", UHLM_WIRE_MAX_NAME, &m->model, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_open(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                          uhlm_wire_open *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_OPEN);
    memset(m, 0, sizeof *m);
    TRY(rd_u32(&r, "mode", &m->mode, err));
    TRY(in_range(&r, "mode", m->mode, UHLM_WIRE_MODE_VERIFY, UHLM_WIRE_MODE_GENERATE, err));
    TRY(rd_f32(&r, "temp", &m->temp, err));
    if (!isfinite(m->temp) || m->temp < 0.0f)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "OPEN: temp %g is not finite and >= 0",
                    (double)m->temp);
    TRY(rd_u32(&r, "top_k", &m->top_k, err));
    TRY(in_range(&r, "top_k", m->top_k, 0, UHLM_WIRE_MAX_VOCAB, err));
    TRY(rd_f32(&r, "top_p", &m->top_p, err));
    if (!(m->top_p > 0.0f && m->top_p <= 1.0f)) /* also false for NaN */
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "OPEN: top_p %g is outside (0, 1]",
                    (double)m->top_p);
    TRY(rd_u64(&r, "seed", &m->seed, err));
    TRY(rd_tokens(&r, "prompt", 1, &m->prompt, err));
    TRY(ctx_fits(&r, 0, m->prompt.n, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_opened(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                            uhlm_wire_opened *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_OPENED);
    memset(m, 0, sizeof *m);
    TRY(rd_u64(&r, "session_id", &m->session_id, err));
    TRY(rd_u32(&r, "n_ctx", &m->n_ctx, err));
    TRY(in_range(&r, "n_ctx", m->n_ctx, 1, UHLM_WIRE_MAX_CTX, err));
    TRY(rd_u32(&r, "n_past", &m->n_past, err));
    TRY(in_range(&r, "n_past", m->n_past, 1, m->n_ctx, err));
    TRY(rd_cost(&r, &m->cost, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_verify(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                            uhlm_wire_verify *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_VERIFY);
    uint16_t reserved;
    memset(m, 0, sizeof *m);
    TRY(rd_u32(&r, "request_id", &m->request_id, err));
    TRY(rd_u32(&r, "flags", &m->flags, err));
    TRY(no_flags(&r, "flags", m->flags, UHLM_WIRE_VF_GREEDY, err));
    TRY(rd_u32(&r, "pos", &m->pos, err));
    TRY(rd_tokens(&r, "catchup", 0, &m->catchup, err));
    TRY(rd_token(&r, "draft", &m->draft, err));
    /* The draft occupies one position past the catch-up tokens. */
    TRY(ctx_fits(&r, m->pos, (uint64_t)m->catchup.n + 1, err));
    TRY(rd_u64(&r, "draw_seed", &m->draw_seed, err));
    TRY(rd_u8(&r, "kind", &m->kind, err));
    TRY(rd_u8(&r, "prob_bits", &m->prob_bits, err));
    TRY(rd_u16(&r, "reserved", &reserved, err));
    TRY(rd_u32(&r, "k", &m->k, err));
    if (reserved != 0) return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: reserved field set");
    switch (m->kind) {
    case UHLM_WIRE_ENC_F32:
    case UHLM_WIRE_ENC_F16:
        if (m->prob_bits != 0 || m->k != 0)
            return fail(err, UHLM_WIRE_E_BAD_PAYLOAD,
                        "VERIFY: dense encoding with prob_bits %u and k %u (both must be 0)",
                        (unsigned)m->prob_bits, (unsigned)m->k);
        break;
    case UHLM_WIRE_ENC_TOPK:
        if (m->prob_bits != 8 && m->prob_bits != 16)
            return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: topk prob_bits %u (8 or 16)",
                        (unsigned)m->prob_bits);
        if (m->k < 1 || m->k > r.lim.vocab)
            return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: topk K %u is outside [1, %u]",
                        (unsigned)m->k, (unsigned)r.lim.vocab);
        break;
    default:
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: unknown payload kind %u",
                    (unsigned)m->kind);
    }
    TRY(rd_u32(&r, "x_len", &m->x.len, err));
    if (m->x.len > r.n - r.off)
        return fail(err, UHLM_WIRE_E_BAD_FRAME,
                    "VERIFY: x length %u exceeds the %zu bytes left in the payload",
                    (unsigned)m->x.len, r.n - r.off);
    if (m->x.len == 0 && !(m->flags & UHLM_WIRE_VF_GREEDY))
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: empty x without the GREEDY flag");
    m->x.p = r.p + r.off;
    r.off += m->x.len;
    return rd_end(&r, err);
}

int uhlm_wire_decode_verdict(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                             uhlm_wire_verdict *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_VERDICT);
    memset(m, 0, sizeof *m);
    uint32_t token, flags, n_past;
    float y_d, x_d, beta;
    TRY(rd_u32(&r, "request_id", &m->request_id, err));
    TRY(rd_token(&r, "token", &token, err));
    TRY(rd_u32(&r, "flags", &flags, err));
    TRY(no_flags(&r, "flags", flags, UHLM_WIRE_DF_ACCEPTED | UHLM_WIRE_DF_Y_GE_X, err));
    TRY(rd_f32(&r, "y_d", &y_d, err));
    TRY(prob(&r, "y_d", y_d, err));
    TRY(rd_f32(&r, "x_d", &x_d, err));
    TRY(prob(&r, "x_d", x_d, err));
    TRY(rd_f32(&r, "beta", &beta, err));
    TRY(prob(&r, "beta", beta, err));
    TRY(rd_cost(&r, &m->cost, err));
    TRY(rd_u32(&r, "n_past", &n_past, err));
    TRY(in_range(&r, "n_past", n_past, 1, UHLM_WIRE_MAX_CTX, err));
    /* token < vocab <= 2^22 and n_past <= UHLM_WIRE_MAX_CTX: both fit an int */
    m->token = (int)token;
    m->accepted = (flags & UHLM_WIRE_DF_ACCEPTED) != 0;
    m->y_ge_x = (flags & UHLM_WIRE_DF_Y_GE_X) != 0;
    m->y_d = y_d;
    m->x_d = x_d;
    m->beta = beta;
    m->n_past = (int)n_past;
    return rd_end(&r, err);
}

int uhlm_wire_decode_generate(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                              uhlm_wire_generate *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_GENERATE);
    memset(m, 0, sizeof *m);
    TRY(rd_u32(&r, "request_id", &m->request_id, err));
    TRY(rd_u32(&r, "flags", &m->flags, err));
    TRY(no_flags(&r, "flags", m->flags, UHLM_WIRE_GF_STOP_EOS, err));
    TRY(rd_u32(&r, "pos", &m->pos, err));
    TRY(rd_tokens(&r, "catchup", 0, &m->catchup, err));
    TRY(rd_u32(&r, "n_gen", &m->n_gen, err));
    if (m->n_gen == 0) return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "GENERATE: n_gen is 0");
    if (m->n_gen > r.lim.max_tokens)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "GENERATE: n_gen %u exceeds the limit of %u",
                    (unsigned)m->n_gen, (unsigned)r.lim.max_tokens);
    /* At least the first generated token must have a position; the server stops early at
     * the end of its context. */
    TRY(ctx_fits(&r, m->pos, (uint64_t)m->catchup.n + 1, err));
    TRY(rd_u64(&r, "draw_seed", &m->draw_seed, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_generated(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                               uhlm_wire_generated *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_GENERATED);
    memset(m, 0, sizeof *m);
    TRY(rd_u32(&r, "request_id", &m->request_id, err));
    TRY(rd_tokens(&r, "tokens", 1, &m->tokens, err));
    TRY(rd_cost(&r, &m->cost, err));
    TRY(rd_u32(&r, "n_past", &m->n_past, err));
    TRY(in_range(&r, "n_past", m->n_past, 1, UHLM_WIRE_MAX_CTX, err));
    return rd_end(&r, err);
}

int uhlm_wire_decode_error(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_errmsg *m, uhlm_error *err) {
    rd r = rd_init(p, n, lim, UHLM_WIRE_ERROR);
    memset(m, 0, sizeof *m);
    TRY(rd_u16(&r, "code", &m->code, err));
    TRY(in_range(&r, "code", m->code, 1, UHLM_WIRE_E_MAX, err));
    TRY(rd_u16(&r, "flags", &m->flags, err));
    TRY(no_flags(&r, "flags", m->flags, UHLM_WIRE_EF_FATAL, err));
    TRY(rd_u32(&r, "request_id", &m->request_id, err));
    TRY(rd_str16(&r, "message", UHLM_WIRE_MAX_ERRMSG, &m->msg, err));
    return rd_end(&r, err);
}

static int decode_text(const uint8_t *p, size_t n, uhlm_wire_str *s, uhlm_error *err) {
    if (n && memchr(p, 0, n))
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "STATS: text contains a NUL byte");
    s->p = (const char *)p;
    s->len = (uint32_t)n; /* n <= max_frame, checked by the caller */
    return 0;
}

int uhlm_wire_decode(uint16_t type, const uint8_t *payload, size_t n,
                     const uhlm_wire_limits *lim, uhlm_wire_msg *m, uhlm_error *err) {
    lims l = eff_limits(lim);
    memset(m, 0, sizeof *m);
    m->type = type;
    if (n > l.max_frame)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "%s: payload of %zu bytes exceeds %u",
                    uhlm_wire_type_name(type), n, (unsigned)l.max_frame);
    if (n && !payload) return fail(err, UHLM_WIRE_E_INTERNAL, "NULL payload");
    switch (type) {
    case UHLM_WIRE_HELLO: return uhlm_wire_decode_hello(payload, n, lim, &m->u.hello, err);
    case UHLM_WIRE_WELCOME: return uhlm_wire_decode_welcome(payload, n, lim, &m->u.welcome, err);
    case UHLM_WIRE_OPEN: return uhlm_wire_decode_open(payload, n, lim, &m->u.open, err);
    case UHLM_WIRE_OPENED: return uhlm_wire_decode_opened(payload, n, lim, &m->u.opened, err);
    case UHLM_WIRE_VERIFY: return uhlm_wire_decode_verify(payload, n, lim, &m->u.verify, err);
    case UHLM_WIRE_VERDICT: return uhlm_wire_decode_verdict(payload, n, lim, &m->u.verdict, err);
    case UHLM_WIRE_GENERATE:
        return uhlm_wire_decode_generate(payload, n, lim, &m->u.generate, err);
    case UHLM_WIRE_GENERATED:
        return uhlm_wire_decode_generated(payload, n, lim, &m->u.generated, err);
    case UHLM_WIRE_ERROR: return uhlm_wire_decode_error(payload, n, lim, &m->u.error, err);
    case UHLM_WIRE_STATS: return decode_text(payload, n, &m->u.text, err);
    case UHLM_WIRE_STATS_REQ:
    case UHLM_WIRE_CLOSE:
        if (n != 0)
            return fail(err, UHLM_WIRE_E_BAD_FRAME, "%s: %zu trailing byte(s) (payload is empty)",
                        uhlm_wire_type_name(type), n);
        return 0;
    case UHLM_WIRE_PING:
    case UHLM_WIRE_PONG:
        if (n != 8)
            return fail(err, UHLM_WIRE_E_BAD_FRAME, "%s: payload is %zu bytes, not 8",
                        uhlm_wire_type_name(type), n);
        m->u.nonce = ld64(payload);
        return 0;
    default:
        return fail(err, UHLM_WIRE_E_UNKNOWN_TYPE, "unknown message type %u", (unsigned)type);
    }
}

/* ---------- header ---------- */

void uhlm_wire_header_write(uint8_t *out, uint16_t type, uint32_t len) {
    memcpy(out, UHLM_WIRE_MAGIC, 4);
    st16(out + 4, UHLM_WIRE_VERSION);
    st16(out + 6, type);
    st32(out + 8, len);
}

int uhlm_wire_frame_header_parse(const uint8_t *buf, size_t n, uhlm_wire_header *h,
                                 uint32_t max_len, uhlm_error *err) {
    if (max_len == 0 || max_len > UHLM_WIRE_MAX_FRAME) max_len = UHLM_WIRE_MAX_FRAME;
    memset(h, 0, sizeof *h);
    if (n < UHLM_WIRE_HEADER_SIZE)
        return fail(err, UHLM_WIRE_E_BAD_FRAME, "frame header truncated (%zu of %d bytes)", n,
                    UHLM_WIRE_HEADER_SIZE);
    if (memcmp(buf, UHLM_WIRE_MAGIC, 4) != 0)
        return fail(err, UHLM_WIRE_E_BAD_MAGIC,
                    "bad magic %02x %02x %02x %02x (not a uhlm peer?)", buf[0], buf[1], buf[2],
                    buf[3]);
    h->version = ld16(buf + 4);
    h->type = ld16(buf + 6);
    h->len = ld32(buf + 8);
    if (h->version != UHLM_WIRE_VERSION)
        return fail(err, UHLM_WIRE_E_BAD_VERSION, "protocol version %u (this side speaks %d)",
                    (unsigned)h->version, UHLM_WIRE_VERSION);
    if (h->len > max_len)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "%s frame of %u bytes exceeds the limit of %u",
                    uhlm_wire_type_name(h->type), (unsigned)h->len, (unsigned)max_len);
    if (h->type == 0 || h->type > UHLM_WIRE_TYPE_MAX)
        return fail(err, UHLM_WIRE_E_UNKNOWN_TYPE, "unknown message type %u",
                    (unsigned)h->type);
    return 0;
}

int uhlm_wire_frame_decode(const uint8_t *buf, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_msg *m, size_t *consumed, uhlm_error *err) {
    uhlm_wire_header h;
    lims l = eff_limits(lim);
    *consumed = 0;
    memset(m, 0, sizeof *m);
    int rc = uhlm_wire_frame_header_parse(buf, n, &h, l.max_frame, err);
    if (rc == -UHLM_WIRE_E_UNKNOWN_TYPE) *consumed = UHLM_WIRE_HEADER_SIZE + (size_t)h.len;
    if (rc) return rc;
    *consumed = UHLM_WIRE_HEADER_SIZE + (size_t)h.len;
    if (n - UHLM_WIRE_HEADER_SIZE < h.len)
        return fail(err, UHLM_WIRE_E_BAD_FRAME, "%s frame truncated: %zu of %u payload bytes",
                    uhlm_wire_type_name(h.type), n - UHLM_WIRE_HEADER_SIZE, (unsigned)h.len);
    return uhlm_wire_decode(h.type, buf + UHLM_WIRE_HEADER_SIZE, h.len, lim, m, err);
}

void uhlm_wire_tokens_copy(const uhlm_wire_tokens *t, int *out) {
    for (uint32_t i = 0; i < t->n; i++) out[i] = (int)uhlm_wire_token_at(t, i);
}

/* ---------- buffer ---------- */

void uhlm_wire_buf_free(uhlm_wire_buf *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int uhlm_wire_buf_reserve(uhlm_wire_buf *b, size_t extra, uhlm_error *err) {
    if (b->cap - b->len >= extra) return 0;
    if (b->len > SIZE_MAX / 2 || extra > SIZE_MAX / 2 - b->len)
        return fail(err, UHLM_WIRE_E_INTERNAL, "wire buffer size overflow");
    size_t want = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) cap *= 2; /* cannot overflow: want < SIZE_MAX / 2 */
    uint8_t *d = realloc(b->data, cap);
    if (!d) return fail(err, UHLM_WIRE_E_INTERNAL, "out of memory for a %zu-byte frame", cap);
    b->data = d;
    b->cap = cap;
    return 0;
}

/* ---------- writer ---------- */

/* Appends into a uhlm_wire_buf within a byte budget. Errors are sticky so that encoders can
 * write every field unconditionally and check once at the end. */
typedef struct wr {
    uhlm_wire_buf *b;
    size_t limit; /* b->len may not exceed this */
    int code;     /* first error, 0 if none */
    uhlm_error *err;
} wr;

static uint8_t *wr_room(wr *w, size_t k) {
    if (w->code) return NULL;
    if (w->limit - w->b->len < k) {
        w->code = fail(w->err, UHLM_WIRE_E_TOO_LARGE, "message does not fit in one frame");
        return NULL;
    }
    int rc = uhlm_wire_buf_reserve(w->b, k, w->err);
    if (rc) {
        w->code = rc;
        return NULL;
    }
    uint8_t *q = w->b->data + w->b->len;
    w->b->len += k;
    return q;
}

static void w8(wr *w, uint8_t v) {
    uint8_t *q = wr_room(w, 1);
    if (q) *q = v;
}
static void w16(wr *w, uint16_t v) {
    uint8_t *q = wr_room(w, 2);
    if (q) st16(q, v);
}
static void w32(wr *w, uint32_t v) {
    uint8_t *q = wr_room(w, 4);
    if (q) st32(q, v);
}
static void w64(wr *w, uint64_t v) {
    uint8_t *q = wr_room(w, 8);
    if (q) st64(q, v);
}
static void wf32(wr *w, float f) { w32(w, f32_bits(f)); }

static void wbytes(wr *w, const void *p, size_t n) {
    if (n == 0) return;
    uint8_t *q = wr_room(w, n);
    if (q) memcpy(q, p, n);
}

/* u16 length + bytes. A length over the u16 range would silently wrap, so it is refused
 * here; the field's own limit is left to the decoder pass. */
static void wblob16(wr *w, const void *p, uint32_t len) {
    if (w->code) return;
    if (len > UINT16_MAX) {
        w->code = fail(w->err, UHLM_WIRE_E_TOO_LARGE, "field of %u bytes exceeds 65535",
                       (unsigned)len);
        return;
    }
    if (len && !p) {
        w->code = fail(w->err, UHLM_WIRE_E_BAD_PAYLOAD, "NULL field with length %u",
                       (unsigned)len);
        return;
    }
    w16(w, (uint16_t)len);
    wbytes(w, p, len);
}

static void wtokens(wr *w, const uhlm_wire_tokens *t) {
    if (w->code) return;
    if (t->n && !t->ids && !t->raw) {
        w->code = fail(w->err, UHLM_WIRE_E_BAD_PAYLOAD, "NULL token list of length %u",
                       (unsigned)t->n);
        return;
    }
    w32(w, t->n);
    /* Token lists are the only fields big enough to matter, so they are bounded before
     * 4*n bytes are touched. */
    if (w->code) return;
    if ((w->limit - w->b->len) / 4 < t->n) {
        w->code = fail(w->err, UHLM_WIRE_E_TOO_LARGE, "%u tokens do not fit in one frame",
                       (unsigned)t->n);
        return;
    }
    if (t->n == 0) return;
    uint8_t *q = wr_room(w, 4 * (size_t)t->n);
    if (!q) return;
    if (t->ids)
        for (uint32_t i = 0; i < t->n; i++) st32(q + 4 * (size_t)i, (uint32_t)t->ids[i]);
    else
        memcpy(q, t->raw, 4 * (size_t)t->n);
}

static void wcost(wr *w, const uhlm_wire_cost *c) {
    w64(w, c->llm_ns);
    w32(w, c->forward_calls);
    w32(w, c->seq_tokens);
    w32(w, c->batch_size);
    w32(w, c->batch_tokens);
}

static void write_payload(wr *w, const uhlm_wire_msg *m) {
    switch (m->type) {
    case UHLM_WIRE_HELLO: {
        const uhlm_wire_hello *h = &m->u.hello;
        w16(w, h->version);
        w16(w, 0);
        w64(w, h->fingerprint);
        w32(w, h->vocab_size);
        wblob16(w, h->auth.p, h->auth.len);
        wblob16(w, h->client.p, h->client.len);
        break;
    }
    case UHLM_WIRE_WELCOME: {
        const uhlm_wire_welcome *h = &m->u.welcome;
        w16(w, h->version);
        w16(w, 0);
        w64(w, h->fingerprint);
        w32(w, h->vocab_size);
        w32(w, h->n_ctx);
        w32(w, h->max_sessions);
        w32(w, h->max_frame);
        w32(w, h->max_batch_tokens);
        w32(w, h->idle_timeout_ms);
        w32(w, h->payload_kinds);
        w64(w, h->nonce);
        wblob16(w, h->model.p, h->model.len);
        break;
    }
    case UHLM_WIRE_OPEN: {
        const uhlm_wire_open *o = &m->u.open;
        w32(w, o->mode);
        wf32(w, o->temp);
        w32(w, o->top_k);
        wf32(w, o->top_p);
        w64(w, o->seed);
        wtokens(w, &o->prompt);
        break;
    }
    case UHLM_WIRE_OPENED: {
        const uhlm_wire_opened *o = &m->u.opened;
        w64(w, o->session_id);
        w32(w, o->n_ctx);
        w32(w, o->n_past);
        wcost(w, &o->cost);
        break;
    }
    case UHLM_WIRE_VERIFY: {
        const uhlm_wire_verify *v = &m->u.verify;
        w32(w, v->request_id);
        w32(w, v->flags);
        w32(w, v->pos);
        wtokens(w, &v->catchup);
        w32(w, v->draft);
        w64(w, v->draw_seed);
        w8(w, v->kind);
        w8(w, v->prob_bits);
        w16(w, 0);
        w32(w, v->k);
        if (!w->code && v->x.len && !v->x.p)
            w->code = fail(w->err, UHLM_WIRE_E_BAD_PAYLOAD, "VERIFY: NULL x");
        w32(w, v->x.len);
        if (!w->code && w->limit - w->b->len < v->x.len)
            w->code = fail(w->err, UHLM_WIRE_E_TOO_LARGE, "VERIFY: x does not fit in one frame");
        wbytes(w, v->x.p, v->x.len);
        break;
    }
    case UHLM_WIRE_VERDICT: {
        const uhlm_wire_verdict *v = &m->u.verdict;
        w32(w, v->request_id);
        w32(w, (uint32_t)v->token); /* a negative one becomes >= vocab: the check refuses it */
        w32(w, (v->accepted ? UHLM_WIRE_DF_ACCEPTED : 0u) | (v->y_ge_x ? UHLM_WIRE_DF_Y_GE_X : 0u));
        wf32(w, (float)v->y_d);
        wf32(w, (float)v->x_d);
        wf32(w, (float)v->beta);
        wcost(w, &v->cost);
        w32(w, (uint32_t)v->n_past);
        break;
    }
    case UHLM_WIRE_GENERATE: {
        const uhlm_wire_generate *g = &m->u.generate;
        w32(w, g->request_id);
        w32(w, g->flags);
        w32(w, g->pos);
        wtokens(w, &g->catchup);
        w32(w, g->n_gen);
        w64(w, g->draw_seed);
        break;
    }
    case UHLM_WIRE_GENERATED: {
        const uhlm_wire_generated *g = &m->u.generated;
        w32(w, g->request_id);
        wtokens(w, &g->tokens);
        wcost(w, &g->cost);
        w32(w, g->n_past);
        break;
    }
    case UHLM_WIRE_ERROR: {
        const uhlm_wire_errmsg *e = &m->u.error;
        w16(w, e->code);
        w16(w, e->flags);
        w32(w, e->request_id);
        wblob16(w, e->msg.p, e->msg.len);
        break;
    }
    case UHLM_WIRE_STATS:
        if (!w->code && m->u.text.len && !m->u.text.p)
            w->code = fail(w->err, UHLM_WIRE_E_BAD_PAYLOAD, "STATS: NULL text");
        if (!w->code && w->limit - w->b->len < m->u.text.len)
            w->code = fail(w->err, UHLM_WIRE_E_TOO_LARGE, "STATS: text does not fit in one frame");
        wbytes(w, m->u.text.p, m->u.text.len);
        break;
    case UHLM_WIRE_STATS_REQ:
    case UHLM_WIRE_CLOSE: break;
    case UHLM_WIRE_PING:
    case UHLM_WIRE_PONG: w64(w, m->u.nonce); break;
    default:
        w->code = fail(w->err, UHLM_WIRE_E_UNKNOWN_TYPE, "cannot encode message type %u",
                       (unsigned)m->type);
    }
}

int uhlm_wire_encode(uhlm_wire_buf *b, const uhlm_wire_msg *m, const uhlm_wire_limits *lim,
                     uhlm_error *err) {
    lims l = eff_limits(lim);
    size_t start = b->len;
    if (SIZE_MAX - start < (size_t)UHLM_WIRE_HEADER_SIZE + l.max_frame)
        return fail(err, UHLM_WIRE_E_INTERNAL, "wire buffer size overflow");
    wr w = {b, start + UHLM_WIRE_HEADER_SIZE + l.max_frame, 0, err};
    (void)wr_room(&w, UHLM_WIRE_HEADER_SIZE); /* filled in once the length is known */
    if (!w.code) write_payload(&w, m);
    if (w.code) {
        b->len = start;
        return w.code;
    }
    size_t plen = b->len - start - UHLM_WIRE_HEADER_SIZE;
    uhlm_wire_msg check;
    int rc = uhlm_wire_decode(m->type, b->data + start + UHLM_WIRE_HEADER_SIZE, plen, lim, &check,
                              err);
    if (rc) {
        b->len = start;
        return rc;
    }
    uhlm_wire_header_write(b->data + start, m->type, (uint32_t)plen);
    return 0;
}

/* ---------- typed conveniences ---------- */

#define ENCODE_AS(TYPE, FIELD, LIM)                  \
    do {                                             \
        uhlm_wire_msg msg_;                          \
        memset(&msg_, 0, sizeof msg_);               \
        msg_.type = (TYPE);                          \
        msg_.u.FIELD = *m;                           \
        return uhlm_wire_encode(b, &msg_, (LIM), err); \
    } while (0)

int uhlm_wire_encode_hello(uhlm_wire_buf *b, const uhlm_wire_hello *m, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_HELLO, hello, NULL);
}
int uhlm_wire_encode_welcome(uhlm_wire_buf *b, const uhlm_wire_welcome *m, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_WELCOME, welcome, NULL);
}
int uhlm_wire_encode_open(uhlm_wire_buf *b, const uhlm_wire_open *m,
                          const uhlm_wire_limits *lim, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_OPEN, open, lim);
}
int uhlm_wire_encode_opened(uhlm_wire_buf *b, const uhlm_wire_opened *m, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_OPENED, opened, NULL);
}
int uhlm_wire_encode_verify(uhlm_wire_buf *b, const uhlm_wire_verify *m,
                            const uhlm_wire_limits *lim, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_VERIFY, verify, lim);
}
int uhlm_wire_encode_verdict(uhlm_wire_buf *b, const uhlm_wire_verdict *m,
                             const uhlm_wire_limits *lim, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_VERDICT, verdict, lim);
}
int uhlm_wire_encode_generate(uhlm_wire_buf *b, const uhlm_wire_generate *m,
                              const uhlm_wire_limits *lim, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_GENERATE, generate, lim);
}
int uhlm_wire_encode_generated(uhlm_wire_buf *b, const uhlm_wire_generated *m,
                               const uhlm_wire_limits *lim, uhlm_error *err) {
    ENCODE_AS(UHLM_WIRE_GENERATED, generated, lim);
}

int uhlm_wire_encode_error(uhlm_wire_buf *b, uint16_t code, uint16_t flags, uint32_t request_id,
                           uhlm_error *err, const char *fmt, ...) {
    char text[UHLM_WIRE_MAX_ERRMSG + 1];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    uhlm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = UHLM_WIRE_ERROR;
    msg.u.error.code = code;
    msg.u.error.flags = flags;
    msg.u.error.request_id = request_id;
    msg.u.error.msg.p = text;
    msg.u.error.msg.len = (uint32_t)strlen(text); /* vsnprintf truncated to the limit */
    return uhlm_wire_encode(b, &msg, NULL, err);
}

int uhlm_wire_encode_stats(uhlm_wire_buf *b, const char *text, size_t len, uhlm_error *err) {
    if (len > UHLM_WIRE_MAX_FRAME)
        return fail(err, UHLM_WIRE_E_TOO_LARGE, "STATS text of %zu bytes exceeds one frame", len);
    uhlm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = UHLM_WIRE_STATS;
    msg.u.text.p = text;
    msg.u.text.len = (uint32_t)len;
    return uhlm_wire_encode(b, &msg, NULL, err);
}

int uhlm_wire_encode_empty(uhlm_wire_buf *b, uint16_t type, uhlm_error *err) {
    if (type != UHLM_WIRE_CLOSE && type != UHLM_WIRE_STATS_REQ)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s is not an empty message",
                    uhlm_wire_type_name(type));
    uhlm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    return uhlm_wire_encode(b, &msg, NULL, err);
}

int uhlm_wire_encode_ping(uhlm_wire_buf *b, uint16_t type, uint64_t nonce, uhlm_error *err) {
    if (type != UHLM_WIRE_PING && type != UHLM_WIRE_PONG)
        return fail(err, UHLM_WIRE_E_BAD_PAYLOAD, "%s is not PING or PONG",
                    uhlm_wire_type_name(type));
    uhlm_wire_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = type;
    msg.u.nonce = nonce;
    return uhlm_wire_encode(b, &msg, NULL, err);
}
