/* test_wire.c: the wire protocol codecs (uhlm/wire.h, docs/protocol.md).
 *
 * Round trips for every message type; byte-exact layouts built by hand from the spec (so the
 * document, not just the encoder, is what is tested); every truncation of every encoding;
 * trailing bytes; every header failure; oversized counts; bad enums, flags, floats, tokens and
 * strings; encoder rollback. Truncated inputs are copied into exact-size heap blocks so that
 * AddressSanitizer catches any read past the end. */
#include "check.h"
#include "uhlm/wire.h"

#include <stdint.h>

/* ---------- a hand-written payload builder, independent of wire.c ---------- */

typedef struct pb {
    uint8_t d[4096];
    size_t n;
} pb;

static void p8(pb *b, uint8_t v) { b->d[b->n++] = v; }
static void p16(pb *b, uint16_t v) {
    p8(b, (uint8_t)v);
    p8(b, (uint8_t)(v >> 8));
}
static void p32(pb *b, uint32_t v) {
    for (int i = 0; i < 4; i++) p8(b, (uint8_t)(v >> (8 * i)));
}
static void p64(pb *b, uint64_t v) {
    for (int i = 0; i < 8; i++) p8(b, (uint8_t)(v >> (8 * i)));
}
static void pf(pb *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    p32(b, u);
}
static void pbytes(pb *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void pstr16(pb *b, const char *s) {
    p16(b, (uint16_t)strlen(s));
    pbytes(b, s, strlen(s));
}

/* Decodes bytes copied into an exact-size heap block; returns the code (0 or negative). */
static int dec(uint16_t type, const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
               uhlm_wire_msg *m) {
    uint8_t *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    uhlm_error err = {{0}};
    int rc = uhlm_wire_decode(type, c, n, lim, m, &err);
    if (rc) CHECKF(err.msg[0] != 0, "no message for code %d", rc);
    free(c);
    return rc;
}

static int frame_dec(const uint8_t *p, size_t n, const uhlm_wire_limits *lim) {
    uint8_t *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    uhlm_error err = {{0}};
    uhlm_wire_msg m;
    size_t used;
    int rc = uhlm_wire_frame_decode(c, n, lim, &m, &used, &err);
    if (rc) CHECKF(err.msg[0] != 0, "no message for code %d", rc);
    free(c);
    return rc;
}

/* ---------- sample messages ---------- */

static const int prompt_ids[] = {1, 9038, 2501, 263, 931, 31999};
static const int catchup_ids[] = {278, 29871, 13};
static const int gen_ids[] = {450, 2, 0};
static const uint8_t xbytes[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x00, 0xaa, 0x55};
static const uint8_t auth_bytes[] = {'s', 0, 'c', 'r', 0xff};

#define NSAMPLES 20

static uhlm_wire_msg sample(int i) {
    uhlm_wire_msg m;
    memset(&m, 0, sizeof m);
    switch (i) {
    case 0:
        m.type = UHLM_WIRE_HELLO;
        m.u.hello.version = 1;
        m.u.hello.fingerprint = 0x0123456789abcdefULL;
        m.u.hello.vocab_size = 32000;
        m.u.hello.auth.p = auth_bytes;
        m.u.hello.auth.len = sizeof auth_bytes;
        m.u.hello.client = uhlm_wire_cstr("phone-7");
        break;
    case 1: /* empty auth and name */
        m.type = UHLM_WIRE_HELLO;
        m.u.hello.version = 1;
        m.u.hello.vocab_size = 1;
        break;
    case 2:
        m.type = UHLM_WIRE_WELCOME;
        m.u.welcome.version = 1;
        m.u.welcome.fingerprint = 0xfeedfacecafebeefULL;
        m.u.welcome.vocab_size = 32000;
        m.u.welcome.n_ctx = 2048;
        m.u.welcome.max_sessions = 64;
        m.u.welcome.max_frame = UHLM_WIRE_MAX_FRAME;
        m.u.welcome.max_batch_tokens = 4096;
        m.u.welcome.idle_timeout_ms = 30000;
        m.u.welcome.payload_kinds = UHLM_WIRE_KINDS_ALL;
        m.u.welcome.nonce = 42;
        m.u.welcome.model = uhlm_wire_cstr("stories-llm-2.76M");
        break;
    case 3:
        m.type = UHLM_WIRE_OPEN;
        m.u.open.mode = UHLM_WIRE_MODE_VERIFY;
        m.u.open.temp = 0.8f;
        m.u.open.top_k = 40;
        m.u.open.top_p = 0.95f;
        m.u.open.seed = 1234567890123ULL;
        m.u.open.prompt.ids = prompt_ids;
        m.u.open.prompt.n = 6;
        break;
    case 4: /* greedy llm-mode session, one-token prompt */
        m.type = UHLM_WIRE_OPEN;
        m.u.open.mode = UHLM_WIRE_MODE_GENERATE;
        m.u.open.temp = 0.0f;
        m.u.open.top_p = 1.0f;
        m.u.open.prompt.ids = prompt_ids;
        m.u.open.prompt.n = 1;
        break;
    case 5:
        m.type = UHLM_WIRE_OPENED;
        m.u.opened.session_id = 0xdeadbeef00000001ULL;
        m.u.opened.n_ctx = 2048;
        m.u.opened.n_past = 6;
        m.u.opened.cost = (uhlm_wire_cost){5000000, 1, 6, 2, 11};
        break;
    case 6: /* f32 with catch-up */
        m.type = UHLM_WIRE_VERIFY;
        m.u.verify.request_id = 7;
        m.u.verify.pos = 6;
        m.u.verify.catchup.ids = catchup_ids;
        m.u.verify.catchup.n = 3;
        m.u.verify.draft = 1576;
        m.u.verify.kind = UHLM_WIRE_ENC_F32;
        m.u.verify.x.p = xbytes;
        m.u.verify.x.len = 8;
        break;
    case 7: /* f16, no catch-up */
        m.type = UHLM_WIRE_VERIFY;
        m.u.verify.request_id = 8;
        m.u.verify.pos = 10;
        m.u.verify.draft = 0;
        m.u.verify.draw_seed = 0x1111222233334444ULL;
        m.u.verify.kind = UHLM_WIRE_ENC_F16;
        m.u.verify.x.p = xbytes;
        m.u.verify.x.len = 2;
        break;
    case 8: /* topk:K with 8-bit probabilities */
        m.type = UHLM_WIRE_VERIFY;
        m.u.verify.request_id = 9;
        m.u.verify.pos = 11;
        m.u.verify.catchup.ids = catchup_ids;
        m.u.verify.catchup.n = 1;
        m.u.verify.draft = 31999;
        m.u.verify.kind = UHLM_WIRE_ENC_TOPK;
        m.u.verify.prob_bits = 8;
        m.u.verify.k = 64;
        m.u.verify.x.p = xbytes;
        m.u.verify.x.len = sizeof xbytes;
        break;
    case 9: /* topk 16-bit */
        m.type = UHLM_WIRE_VERIFY;
        m.u.verify.request_id = 10;
        m.u.verify.pos = 13;
        m.u.verify.draft = 5;
        m.u.verify.kind = UHLM_WIRE_ENC_TOPK;
        m.u.verify.prob_bits = 16;
        m.u.verify.k = 32000;
        m.u.verify.x.p = xbytes;
        m.u.verify.x.len = 3;
        break;
    case 10: /* greedy: x omitted */
        m.type = UHLM_WIRE_VERIFY;
        m.u.verify.request_id = 11;
        m.u.verify.flags = UHLM_WIRE_VF_GREEDY;
        m.u.verify.pos = 14;
        m.u.verify.draft = 2;
        break;
    case 11:
        m.type = UHLM_WIRE_VERDICT;
        m.u.verdict.request_id = 7;
        m.u.verdict.token = 1576;
        m.u.verdict.accepted = 1;
        m.u.verdict.y_ge_x = 1;
        m.u.verdict.y_d = 0.25f;
        m.u.verdict.x_d = 0.125f;
        m.u.verdict.beta = 0.0f;
        m.u.verdict.cost = (uhlm_wire_cost){1234567, 1, 4, 3, 9};
        m.u.verdict.n_past = 10;
        break;
    case 12: /* rejected */
        m.type = UHLM_WIRE_VERDICT;
        m.u.verdict.request_id = 8;
        m.u.verdict.token = 99;
        m.u.verdict.y_d = 0.0f;
        m.u.verdict.x_d = 1.0f;
        m.u.verdict.beta = 1.0f;
        m.u.verdict.n_past = 11;
        break;
    case 13:
        m.type = UHLM_WIRE_GENERATE;
        m.u.generate.request_id = 3;
        m.u.generate.flags = UHLM_WIRE_GF_STOP_EOS;
        m.u.generate.pos = 6;
        m.u.generate.catchup.ids = catchup_ids;
        m.u.generate.catchup.n = 2;
        m.u.generate.n_gen = 1;
        break;
    case 14:
        m.type = UHLM_WIRE_GENERATE;
        m.u.generate.request_id = 4;
        m.u.generate.pos = 9;
        m.u.generate.n_gen = 128;
        m.u.generate.draw_seed = 77;
        break;
    case 15:
        m.type = UHLM_WIRE_GENERATED;
        m.u.generated.request_id = 3;
        m.u.generated.tokens.ids = gen_ids;
        m.u.generated.tokens.n = 2;
        m.u.generated.cost = (uhlm_wire_cost){99, 2, 3, 1, 3};
        m.u.generated.n_past = 10;
        break;
    case 16:
        m.type = UHLM_WIRE_ERROR;
        m.u.error.code = UHLM_WIRE_E_NOT_OPEN;
        m.u.error.flags = UHLM_WIRE_EF_FATAL;
        m.u.error.request_id = 5;
        m.u.error.msg = uhlm_wire_cstr("VERIFY before OPEN");
        break;
    case 17:
        m.type = UHLM_WIRE_STATS;
        m.u.text = uhlm_wire_cstr("uhlm_sessions 3\nuhlm_verifications_total 17\n");
        break;
    case 18: m.type = UHLM_WIRE_PING; m.u.nonce = 0x0102030405060708ULL; break;
    default: m.type = UHLM_WIRE_CLOSE; break;
    }
    return m;
}

static int tokens_equal(const uhlm_wire_tokens *a, const uhlm_wire_tokens *b) {
    if (a->n != b->n) return 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (uhlm_wire_token_at(a, i) != uhlm_wire_token_at(b, i)) return 0;
    return 1;
}
static int str_equal(uhlm_wire_str a, uhlm_wire_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}
static int bytes_equal(uhlm_wire_bytes a, uhlm_wire_bytes b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}
static int feq(float a, float b) { return memcmp(&a, &b, 4) == 0; }
static int cost_equal(const uhlm_wire_cost *a, const uhlm_wire_cost *b) {
    return a->llm_ns == b->llm_ns && a->forward_calls == b->forward_calls &&
           a->seq_tokens == b->seq_tokens && a->batch_size == b->batch_size &&
           a->batch_tokens == b->batch_tokens;
}

static int msg_equal(const uhlm_wire_msg *a, const uhlm_wire_msg *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case UHLM_WIRE_HELLO: {
        const uhlm_wire_hello *x = &a->u.hello, *y = &b->u.hello;
        return x->version == y->version && x->fingerprint == y->fingerprint &&
               x->vocab_size == y->vocab_size && bytes_equal(x->auth, y->auth) &&
               str_equal(x->client, y->client);
    }
    case UHLM_WIRE_WELCOME: {
        const uhlm_wire_welcome *x = &a->u.welcome, *y = &b->u.welcome;
        return x->version == y->version && x->fingerprint == y->fingerprint &&
               x->vocab_size == y->vocab_size && x->n_ctx == y->n_ctx &&
               x->max_sessions == y->max_sessions && x->max_frame == y->max_frame &&
               x->max_batch_tokens == y->max_batch_tokens &&
               x->idle_timeout_ms == y->idle_timeout_ms && x->payload_kinds == y->payload_kinds &&
               x->nonce == y->nonce && str_equal(x->model, y->model);
    }
    case UHLM_WIRE_OPEN: {
        const uhlm_wire_open *x = &a->u.open, *y = &b->u.open;
        return x->mode == y->mode && feq(x->temp, y->temp) && x->top_k == y->top_k &&
               feq(x->top_p, y->top_p) && x->seed == y->seed && tokens_equal(&x->prompt, &y->prompt);
    }
    case UHLM_WIRE_OPENED:
        return a->u.opened.session_id == b->u.opened.session_id &&
               a->u.opened.n_ctx == b->u.opened.n_ctx && a->u.opened.n_past == b->u.opened.n_past &&
               cost_equal(&a->u.opened.cost, &b->u.opened.cost);
    case UHLM_WIRE_VERIFY: {
        const uhlm_wire_verify *x = &a->u.verify, *y = &b->u.verify;
        return x->request_id == y->request_id && x->flags == y->flags && x->pos == y->pos &&
               tokens_equal(&x->catchup, &y->catchup) && x->draft == y->draft &&
               x->draw_seed == y->draw_seed && x->kind == y->kind && x->prob_bits == y->prob_bits &&
               x->k == y->k && bytes_equal(x->x, y->x);
    }
    case UHLM_WIRE_VERDICT: {
        const uhlm_wire_verdict *x = &a->u.verdict, *y = &b->u.verdict;
        return x->request_id == y->request_id && x->token == y->token && x->accepted == y->accepted &&
               x->y_ge_x == y->y_ge_x &&
               feq(x->y_d, y->y_d) && feq(x->x_d, y->x_d) && feq(x->beta, y->beta) &&
               cost_equal(&x->cost, &y->cost) && x->n_past == y->n_past;
    }
    case UHLM_WIRE_GENERATE: {
        const uhlm_wire_generate *x = &a->u.generate, *y = &b->u.generate;
        return x->request_id == y->request_id && x->flags == y->flags && x->pos == y->pos &&
               tokens_equal(&x->catchup, &y->catchup) && x->n_gen == y->n_gen &&
               x->draw_seed == y->draw_seed;
    }
    case UHLM_WIRE_GENERATED: {
        const uhlm_wire_generated *x = &a->u.generated, *y = &b->u.generated;
        return x->request_id == y->request_id && tokens_equal(&x->tokens, &y->tokens) &&
               cost_equal(&x->cost, &y->cost) && x->n_past == y->n_past;
    }
    case UHLM_WIRE_ERROR:
        return a->u.error.code == b->u.error.code && a->u.error.flags == b->u.error.flags &&
               a->u.error.request_id == b->u.error.request_id &&
               str_equal(a->u.error.msg, b->u.error.msg);
    case UHLM_WIRE_STATS: return str_equal(a->u.text, b->u.text);
    case UHLM_WIRE_PING:
    case UHLM_WIRE_PONG: return a->u.nonce == b->u.nonce;
    default: return 1;
    }
}

/* ---------- round trips ---------- */

static void test_round_trips(void) {
    uhlm_wire_limits lim = {0, 0, 32000};
    for (int i = 0; i < NSAMPLES; i++) {
        uhlm_wire_msg m = sample(i), d;
        uhlm_wire_buf b = {0};
        uhlm_error err = {{0}};
        int rc = uhlm_wire_encode(&b, &m, &lim, &err);
        CHECKF(rc == 0, "sample %d (%s): %s", i, uhlm_wire_type_name(m.type), err.msg);
        if (rc) continue;
        uhlm_wire_header h;
        CHECK(uhlm_wire_frame_header_parse(b.data, b.len, &h, 0, &err) == 0);
        CHECK(h.type == m.type && h.version == UHLM_WIRE_VERSION);
        CHECK(h.len + (size_t)UHLM_WIRE_HEADER_SIZE == b.len);
        size_t used = 0;
        rc = uhlm_wire_frame_decode(b.data, b.len, &lim, &d, &used, &err);
        CHECKF(rc == 0, "sample %d decode: %s", i, err.msg);
        CHECK(used == b.len);
        CHECKF(msg_equal(&m, &d), "sample %d (%s) differs after a round trip", i,
               uhlm_wire_type_name(m.type));
        /* a decoded message re-encodes to the same bytes (zero-copy lists included) */
        uhlm_wire_buf b2 = {0};
        CHECK(uhlm_wire_encode(&b2, &d, &lim, &err) == 0);
        CHECK(b2.len == b.len && memcmp(b2.data, b.data, b.len) == 0);
        uhlm_wire_buf_free(&b2);
        uhlm_wire_buf_free(&b);
    }
    /* decoded token lists read back as ints */
    uhlm_wire_msg m = sample(3), d;
    uhlm_wire_buf b = {0};
    size_t used;
    CHECK(uhlm_wire_encode(&b, &m, NULL, NULL) == 0);
    CHECK(uhlm_wire_frame_decode(b.data, b.len, NULL, &d, &used, NULL) == 0);
    int ids[6] = {0};
    CHECK(d.u.open.prompt.ids == NULL && d.u.open.prompt.raw != NULL);
    uhlm_wire_tokens_copy(&d.u.open.prompt, ids);
    CHECK(memcmp(ids, prompt_ids, sizeof ids) == 0);
    uhlm_wire_buf_free(&b);
}

/* Several frames in one buffer decode in sequence: a receiver can parse a stream. */
static void test_stream(void) {
    uhlm_wire_buf b = {0};
    uhlm_error err;
    for (int i = 0; i < NSAMPLES; i++) {
        uhlm_wire_msg m = sample(i);
        CHECK(uhlm_wire_encode(&b, &m, NULL, &err) == 0);
    }
    size_t off = 0;
    int n = 0;
    while (off < b.len) {
        uhlm_wire_msg d;
        size_t used = 0;
        if (uhlm_wire_frame_decode(b.data + off, b.len - off, NULL, &d, &used, &err) != 0) break;
        uhlm_wire_msg m = sample(n);
        CHECK(msg_equal(&m, &d));
        off += used;
        n++;
    }
    CHECK(n == NSAMPLES && off == b.len);
    uhlm_wire_buf_free(&b);
}

/* ---------- byte layouts from docs/protocol.md ---------- */

static void expect_bytes(const uhlm_wire_msg *m, uint16_t type, const pb *payload) {
    uhlm_wire_buf b = {0};
    uhlm_error err = {{0}};
    int rc = uhlm_wire_encode(&b, m, NULL, &err);
    CHECKF(rc == 0, "%s", err.msg);
    uint8_t hdr[UHLM_WIRE_HEADER_SIZE];
    uhlm_wire_header_write(hdr, type, (uint32_t)payload->n);
    int same = rc == 0 && b.len == sizeof hdr + payload->n && memcmp(b.data, hdr, sizeof hdr) == 0 &&
               memcmp(b.data + sizeof hdr, payload->d, payload->n) == 0;
    CHECKF(same, "%s layout differs from the spec", uhlm_wire_type_name(type));
    uhlm_wire_buf_free(&b);
}

static void test_layouts(void) {
    /* header: "UHLM", version 1, type, length, all little-endian */
    uint8_t h[12];
    uhlm_wire_header_write(h, UHLM_WIRE_PING, 8);
    static const uint8_t want[12] = {'U', 'H', 'L', 'M', 1, 0, 13, 0, 8, 0, 0, 0};
    CHECK(memcmp(h, want, 12) == 0);

    pb p = {.n = 0};
    uhlm_wire_msg m = sample(0);
    p16(&p, 1), p16(&p, 0), p64(&p, 0x0123456789abcdefULL), p32(&p, 32000);
    p16(&p, sizeof auth_bytes), pbytes(&p, auth_bytes, sizeof auth_bytes), pstr16(&p, "phone-7");
    expect_bytes(&m, UHLM_WIRE_HELLO, &p);

    p.n = 0, m = sample(2);
    p16(&p, 1), p16(&p, 0), p64(&p, 0xfeedfacecafebeefULL), p32(&p, 32000), p32(&p, 2048);
    p32(&p, 64), p32(&p, UHLM_WIRE_MAX_FRAME), p32(&p, 4096), p32(&p, 30000), p32(&p, 7);
    p64(&p, 42), pstr16(&p, "stories-llm-2.76M");
    expect_bytes(&m, UHLM_WIRE_WELCOME, &p);

    p.n = 0, m = sample(3);
    p32(&p, 0), pf(&p, 0.8f), p32(&p, 40), pf(&p, 0.95f), p64(&p, 1234567890123ULL), p32(&p, 6);
    for (int i = 0; i < 6; i++) p32(&p, (uint32_t)prompt_ids[i]);
    expect_bytes(&m, UHLM_WIRE_OPEN, &p);

    p.n = 0, m = sample(5);
    p64(&p, 0xdeadbeef00000001ULL), p32(&p, 2048), p32(&p, 6);
    p64(&p, 5000000), p32(&p, 1), p32(&p, 6), p32(&p, 2), p32(&p, 11);
    expect_bytes(&m, UHLM_WIRE_OPENED, &p);

    p.n = 0, m = sample(8);
    p32(&p, 9), p32(&p, 0), p32(&p, 11), p32(&p, 1), p32(&p, 278), p32(&p, 31999), p64(&p, 0);
    p8(&p, 2), p8(&p, 8), p16(&p, 0), p32(&p, 64), p32(&p, sizeof xbytes);
    pbytes(&p, xbytes, sizeof xbytes);
    expect_bytes(&m, UHLM_WIRE_VERIFY, &p);

    p.n = 0, m = sample(11);
    p32(&p, 7), p32(&p, 1576), p32(&p, 3), pf(&p, 0.25f), pf(&p, 0.125f), pf(&p, 0.0f);
    p64(&p, 1234567), p32(&p, 1), p32(&p, 4), p32(&p, 3), p32(&p, 9), p32(&p, 10);
    expect_bytes(&m, UHLM_WIRE_VERDICT, &p);

    p.n = 0, m = sample(13);
    p32(&p, 3), p32(&p, 1), p32(&p, 6), p32(&p, 2), p32(&p, 278), p32(&p, 29871), p32(&p, 1);
    p64(&p, 0);
    expect_bytes(&m, UHLM_WIRE_GENERATE, &p);

    p.n = 0, m = sample(15);
    p32(&p, 3), p32(&p, 2), p32(&p, 450), p32(&p, 2), p64(&p, 99), p32(&p, 2), p32(&p, 3);
    p32(&p, 1), p32(&p, 3), p32(&p, 10);
    expect_bytes(&m, UHLM_WIRE_GENERATED, &p);

    p.n = 0, m = sample(16);
    p16(&p, 6), p16(&p, 1), p32(&p, 5), pstr16(&p, "VERIFY before OPEN");
    expect_bytes(&m, UHLM_WIRE_ERROR, &p);

    p.n = 0, m = sample(18);
    p64(&p, 0x0102030405060708ULL);
    expect_bytes(&m, UHLM_WIRE_PING, &p);

    p.n = 0, m = sample(19);
    expect_bytes(&m, UHLM_WIRE_CLOSE, &p);
}

/* ---------- truncation and trailing bytes ---------- */

static void test_truncation(void) {
    for (int i = 0; i < NSAMPLES; i++) {
        uhlm_wire_msg m = sample(i), d;
        uhlm_wire_buf b = {0};
        if (uhlm_wire_encode(&b, &m, NULL, NULL) != 0) {
            CHECK(0);
            continue;
        }
        /* every prefix of the frame is refused */
        int all = 1;
        for (size_t k = 0; k < b.len; k++) {
            int rc = frame_dec(b.data, k, NULL);
            if (rc != -UHLM_WIRE_E_BAD_FRAME) {
                all = 0;
                fprintf(stderr, "%s frame cut at %zu: rc %d\n", uhlm_wire_type_name(m.type), k, rc);
            }
        }
        CHECKF(all, "sample %d: frame truncation", i);
        /* every prefix of the payload is refused, where the payload has a structure (a prefix
         * of STATS text is text; the frame length is what protects it) */
        const uint8_t *pl = b.data + UHLM_WIRE_HEADER_SIZE;
        size_t plen = b.len - UHLM_WIRE_HEADER_SIZE;
        if (m.type != UHLM_WIRE_STATS) {
            all = 1;
            for (size_t k = 0; k < plen; k++) {
                int rc = dec(m.type, pl, k, NULL, &d);
                if (rc != -UHLM_WIRE_E_BAD_FRAME && rc != -UHLM_WIRE_E_BAD_PAYLOAD) {
                    all = 0;
                    fprintf(stderr, "%s payload cut at %zu: rc %d\n", uhlm_wire_type_name(m.type),
                            k, rc);
                }
            }
            CHECKF(all, "sample %d: payload truncation", i);
            /* one trailing byte */
            uint8_t *ext = malloc(plen + 1);
            if (!ext) abort();
            if (plen) memcpy(ext, pl, plen);
            ext[plen] = 0;
            CHECKF(dec(m.type, ext, plen + 1, NULL, &d) == -UHLM_WIRE_E_BAD_FRAME,
                   "sample %d: trailing byte accepted", i);
            free(ext);
        }
        uhlm_wire_buf_free(&b);
    }
}

/* ---------- header ---------- */

static void test_header(void) {
    uint8_t f[12];
    uhlm_wire_header h;
    uhlm_error err;
    uhlm_wire_header_write(f, UHLM_WIRE_VERIFY, 100);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == 0 && h.len == 100);
    for (size_t k = 0; k < 12; k++)
        CHECK(uhlm_wire_frame_header_parse(f, k, &h, 0, &err) == -UHLM_WIRE_E_BAD_FRAME);

    f[0] = 'X';
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_BAD_MAGIC);
    memcpy(f, "GET ", 4); /* an HTTP client on the port */
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_BAD_MAGIC);

    uhlm_wire_header_write(f, UHLM_WIRE_VERIFY, 100);
    f[4] = 2;
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_BAD_VERSION);
    f[4] = 0;
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_BAD_VERSION);
    CHECK(strstr(err.msg, "version") != NULL);

    /* 4 GiB announced, one byte over the default, over a smaller limit */
    uhlm_wire_header_write(f, UHLM_WIRE_VERIFY, 0xffffffffu);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_TOO_LARGE);
    uhlm_wire_header_write(f, UHLM_WIRE_VERIFY, UHLM_WIRE_MAX_FRAME + 1);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_TOO_LARGE);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0xffffffffu, &err) == -UHLM_WIRE_E_TOO_LARGE);
    uhlm_wire_header_write(f, UHLM_WIRE_VERIFY, UHLM_WIRE_MAX_FRAME);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == 0);
    CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 65536, &err) == -UHLM_WIRE_E_TOO_LARGE);
    /* 4 GiB through the frame decoder: refused from the header alone */
    {
        uhlm_wire_msg m;
        size_t used = 7;
        uhlm_wire_header_write(f, UHLM_WIRE_OPEN, 0xffffffffu);
        CHECK(uhlm_wire_frame_decode(f, 12, NULL, &m, &used, &err) == -UHLM_WIRE_E_TOO_LARGE);
        CHECK(used == 0);
        uhlm_wire_limits small = {70000, 0, 0};
        uhlm_wire_header_write(f, UHLM_WIRE_OPEN, 70001);
        CHECK(uhlm_wire_frame_decode(f, 12, &small, &m, &used, &err) == -UHLM_WIRE_E_TOO_LARGE);
    }

    /* unknown types: the header is still filled so the payload can be skipped */
    static const uint16_t bad_types[] = {0, UHLM_WIRE_TYPE_MAX + 1, 0x100, 0xffff};
    for (size_t i = 0; i < sizeof bad_types / sizeof *bad_types; i++) {
        uhlm_wire_header_write(f, bad_types[i], 5);
        CHECK(uhlm_wire_frame_header_parse(f, 12, &h, 0, &err) == -UHLM_WIRE_E_UNKNOWN_TYPE);
        CHECK(h.len == 5 && h.type == bad_types[i]);
        uint8_t fr[17] = {0};
        memcpy(fr, f, 12);
        uhlm_wire_msg m;
        size_t used = 0;
        CHECK(uhlm_wire_frame_decode(fr, sizeof fr, NULL, &m, &used, &err) ==
              -UHLM_WIRE_E_UNKNOWN_TYPE);
        CHECK(used == 17);
        CHECK(dec(bad_types[i], fr + 12, 5, NULL, &m) == -UHLM_WIRE_E_UNKNOWN_TYPE);
    }
    /* a payload longer than the limit, bypassing the header */
    {
        uhlm_wire_msg m;
        uhlm_wire_limits small = {16, 0, 0};
        uint8_t z[17] = {0};
        CHECK(uhlm_wire_decode(UHLM_WIRE_STATS, z, 17, &small, &m, &err) == -UHLM_WIRE_E_TOO_LARGE);
    }
}

/* ---------- field-level malformations, built by hand ---------- */

static void hello_payload(pb *p, uint16_t version, uint16_t flags, uint32_t vocab, uint16_t alen,
                          const char *name) {
    p->n = 0;
    p16(p, version), p16(p, flags), p64(p, 1), p32(p, vocab), p16(p, alen);
    for (int i = 0; i < alen; i++) p8(p, 'a');
    pstr16(p, name);
}

static void test_hello_welcome(void) {
    pb p;
    uhlm_wire_msg m;
    hello_payload(&p, 1, 0, 32000, 3, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == 0 && m.u.hello.auth.len == 3);
    hello_payload(&p, 0, 0, 32000, 0, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_VERSION);
    hello_payload(&p, 1, 4, 32000, 0, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    hello_payload(&p, 1, 0, 0, 0, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    hello_payload(&p, 1, 0, UHLM_WIRE_MAX_VOCAB + 1, 0, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    hello_payload(&p, 1, 0, UHLM_WIRE_MAX_VOCAB, UHLM_WIRE_MAX_AUTH, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == 0);
    hello_payload(&p, 1, 0, 32000, UHLM_WIRE_MAX_AUTH + 1, "dev");
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_TOO_LARGE);
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[UHLM_WIRE_MAX_NAME] = 0;
    hello_payload(&p, 1, 0, 32000, 0, longname);
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == 0);
    longname[UHLM_WIRE_MAX_NAME] = 'n';
    longname[UHLM_WIRE_MAX_NAME + 1] = 0;
    hello_payload(&p, 1, 0, 32000, 0, longname);
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_TOO_LARGE);
    /* a string length pointing past the payload */
    hello_payload(&p, 1, 0, 32000, 0, "dev");
    p.d[p.n - 5] = 0xff, p.d[p.n - 4] = 0xff;
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_TOO_LARGE);
    p.d[p.n - 5] = 200, p.d[p.n - 4] = 0;
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_FRAME);
    /* NUL inside the name; NUL inside the auth token is fine (it is bytes) */
    hello_payload(&p, 1, 0, 32000, 0, "d\001v");
    p.d[p.n - 2] = 0;
    CHECK(dec(UHLM_WIRE_HELLO, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    /* decoded in place: the result points into the payload */
    static const uint8_t nul_auth[22] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2};
    CHECK(uhlm_wire_decode(UHLM_WIRE_HELLO, nul_auth, sizeof nul_auth, NULL, &m, NULL) == 0);
    CHECK(m.u.hello.auth.len == 2 && m.u.hello.auth.p == nul_auth + 18 && m.u.hello.auth.p[0] == 0);

    /* WELCOME limits */
    uhlm_wire_msg w = sample(2);
    uhlm_wire_buf b = {0};
    uhlm_error err;
    w.u.welcome.max_frame = UHLM_WIRE_MIN_FRAME - 1;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD && b.len == 0);
    w.u.welcome.max_frame = UHLM_WIRE_MIN_FRAME;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == 0);
    b.len = 0;
    w.u.welcome.payload_kinds = 0;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.payload_kinds = 8;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.payload_kinds = UHLM_WIRE_KIND_BIT(UHLM_WIRE_ENC_TOPK);
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == 0);
    b.len = 0;
    w.u.welcome.max_batch_tokens = 0;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.max_batch_tokens = UHLM_WIRE_MAX_TOKENS + 1;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.max_batch_tokens = 8;
    w.u.welcome.n_ctx = 0;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.n_ctx = 1;
    w.u.welcome.max_sessions = 0;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    w.u.welcome.max_sessions = 1;
    w.u.welcome.version = 0;
    CHECK(uhlm_wire_encode(&b, &w, NULL, &err) == -UHLM_WIRE_E_BAD_VERSION);
    CHECK(b.len == 0);
    uhlm_wire_buf_free(&b);
}

static void open_payload(pb *p, uint32_t mode, float temp, uint32_t top_k, float top_p,
                         uint32_t count, int nids, uint32_t id) {
    p->n = 0;
    p32(p, mode), pf(p, temp), p32(p, top_k), pf(p, top_p), p64(p, 5), p32(p, count);
    for (int i = 0; i < nids; i++) p32(p, id);
}

static void test_open(void) {
    pb p;
    uhlm_wire_msg m;
    uhlm_wire_limits lim = {0, 0, 32000};
    open_payload(&p, 0, 1.0f, 0, 1.0f, 3, 3, 31999);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == 0);
    CHECK(uhlm_wire_decode(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m, NULL) == 0); /* in place */
    CHECK(m.u.open.prompt.n == 3 && uhlm_wire_token_at(&m.u.open.prompt, 2) == 31999);
    /* token id out of range for this vocabulary, and at the 2^22 ceiling */
    open_payload(&p, 0, 1.0f, 0, 1.0f, 3, 3, 32000);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_TOKEN);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, NULL, &m) == 0);
    open_payload(&p, 0, 1.0f, 0, 1.0f, 1, 1, UHLM_WIRE_MAX_VOCAB);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_TOKEN);
    open_payload(&p, 0, 1.0f, 0, 1.0f, 1, 1, 0xffffffffu); /* would be -1 as an int */
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_TOKEN);
    /* counts: empty, huge, over a smaller limit, more than the payload holds */
    open_payload(&p, 0, 1.0f, 0, 1.0f, 0, 0, 0);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    open_payload(&p, 0, 1.0f, 0, 1.0f, 0xffffffffu, 2, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_TOO_LARGE);
    open_payload(&p, 0, 1.0f, 0, 1.0f, UHLM_WIRE_MAX_TOKENS + 1, 2, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_TOO_LARGE);
    open_payload(&p, 0, 1.0f, 0, 1.0f, UHLM_WIRE_MAX_TOKENS, 2, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_FRAME);
    open_payload(&p, 0, 1.0f, 0, 1.0f, 5, 5, 1);
    uhlm_wire_limits four = {0, 4, 32000};
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &four, &m) == -UHLM_WIRE_E_TOO_LARGE);
    open_payload(&p, 0, 1.0f, 0, 1.0f, 3, 2, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_FRAME);
    /* enums and floats */
    open_payload(&p, 2, 1.0f, 0, 1.0f, 1, 1, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    open_payload(&p, 0xffffffffu, 1.0f, 0, 1.0f, 1, 1, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    const float bad_temps[] = {NAN, INFINITY, -INFINITY, -1.0f, -1e-30f};
    for (size_t i = 0; i < sizeof bad_temps / sizeof *bad_temps; i++) {
        open_payload(&p, 0, bad_temps[i], 0, 1.0f, 1, 1, 1);
        CHECKF(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD, "temp %g",
               (double)bad_temps[i]);
    }
    const float bad_top_p[] = {NAN, INFINITY, 0.0f, -0.5f, 1.0001f};
    for (size_t i = 0; i < sizeof bad_top_p / sizeof *bad_top_p; i++) {
        open_payload(&p, 0, 1.0f, 0, bad_top_p[i], 1, 1, 1);
        CHECKF(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD, "top_p %g",
               (double)bad_top_p[i]);
    }
    open_payload(&p, 0, 1.0f, UHLM_WIRE_MAX_VOCAB + 1, 1.0f, 1, 1, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    open_payload(&p, 1, 0.0f, UHLM_WIRE_MAX_VOCAB, 1e-6f, 1, 1, 1);
    CHECK(dec(UHLM_WIRE_OPEN, p.d, p.n, &lim, &m) == 0);

    /* OPENED */
    p.n = 0, p64(&p, 1), p32(&p, 16), p32(&p, 17), p64(&p, 0), p32(&p, 0), p32(&p, 0), p32(&p, 0);
    p32(&p, 0);
    CHECK(dec(UHLM_WIRE_OPENED, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    p.n = 0, p64(&p, 1), p32(&p, 0), p32(&p, 0), p64(&p, 0), p32(&p, 0), p32(&p, 0), p32(&p, 0);
    p32(&p, 0);
    CHECK(dec(UHLM_WIRE_OPENED, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    p.n = 0, p64(&p, 1), p32(&p, 16), p32(&p, 16), p64(&p, 0), p32(&p, 0), p32(&p, 0), p32(&p, 0);
    p32(&p, 0);
    CHECK(dec(UHLM_WIRE_OPENED, p.d, p.n, NULL, &m) == 0);
}

typedef struct vfields {
    uint32_t flags, pos, count;
    int nids;
    uint32_t id, draft;
    uint64_t seed;
    uint8_t kind, bits;
    uint16_t reserved;
    uint32_t k, xlen;
    int nx;
} vfields;

static vfields vgood(void) {
    vfields v = {0, 5, 2, 2, 7, 9, 0, UHLM_WIRE_ENC_TOPK, 16, 0, 4, 6, 6};
    return v;
}

static void verify_payload(pb *p, const vfields *v) {
    p->n = 0;
    p32(p, 1), p32(p, v->flags), p32(p, v->pos), p32(p, v->count);
    for (int i = 0; i < v->nids; i++) p32(p, v->id);
    p32(p, v->draft), p64(p, v->seed), p8(p, v->kind), p8(p, v->bits), p16(p, v->reserved);
    p32(p, v->k), p32(p, v->xlen);
    for (int i = 0; i < v->nx; i++) p8(p, (uint8_t)i);
}

static int vdec(const vfields *v, const uhlm_wire_limits *lim) {
    pb p;
    uhlm_wire_msg m;
    verify_payload(&p, v);
    return dec(UHLM_WIRE_VERIFY, p.d, p.n, lim, &m);
}

static void test_verify(void) {
    uhlm_wire_limits lim = {0, 0, 32000};
    vfields v = vgood();
    CHECK(vdec(&v, &lim) == 0);
    v = vgood(), v.draft = 32000;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_TOKEN);
    v = vgood(), v.id = 40000;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_TOKEN);
    v = vgood(), v.count = 0xffffffffu;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_TOO_LARGE);
    v = vgood(), v.count = 1000;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_FRAME);
    v = vgood(), v.count = 0, v.nids = 0;
    CHECK(vdec(&v, &lim) == 0);
    /* topk: K larger than the vocabulary, zero K, bad bit widths */
    v = vgood(), v.k = 32001;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.k = 32000;
    CHECK(vdec(&v, &lim) == 0);
    v.k = 0;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.k = 0xffffffffu;
    CHECK(vdec(&v, NULL) == -UHLM_WIRE_E_BAD_PAYLOAD);
    const uint8_t bad_bits[] = {0, 1, 4, 12, 32, 255};
    for (size_t i = 0; i < sizeof bad_bits; i++) {
        v = vgood(), v.bits = bad_bits[i];
        CHECKF(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD, "bits %u", bad_bits[i]);
    }
    v = vgood(), v.bits = 8;
    CHECK(vdec(&v, &lim) == 0);
    /* dense kinds carry no K and no bit width; unknown kinds */
    v = vgood(), v.kind = UHLM_WIRE_ENC_F32, v.bits = 0, v.k = 0;
    CHECK(vdec(&v, &lim) == 0);
    v.kind = UHLM_WIRE_ENC_F16;
    CHECK(vdec(&v, &lim) == 0);
    v.k = 4;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.k = 0, v.bits = 16;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v = vgood(), v.kind = 3;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.kind = 255;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v = vgood(), v.reserved = 1;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    /* flags; any seed */
    v = vgood(), v.flags = 2;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.flags = 0x80000000u;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v = vgood(), v.seed = 0xffffffffffffffffULL;
    CHECK(vdec(&v, &lim) == 0);
    /* x: length past the payload, empty without GREEDY, empty with GREEDY */
    v = vgood(), v.xlen = 7;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_FRAME);
    v.xlen = 0xffffffffu;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_FRAME);
    v = vgood(), v.xlen = 0, v.nx = 0;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_PAYLOAD);
    v.flags = UHLM_WIRE_VF_GREEDY;
    CHECK(vdec(&v, &lim) == 0);
    v = vgood(), v.xlen = 5; /* one byte of x left over */
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_BAD_FRAME);
    /* positions past any context */
    v = vgood(), v.pos = UHLM_WIRE_MAX_CTX - 2;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_CTX_FULL);
    v.pos = UHLM_WIRE_MAX_CTX - 3;
    CHECK(vdec(&v, &lim) == 0);
    v.pos = 0xffffffffu;
    CHECK(vdec(&v, &lim) == -UHLM_WIRE_E_CTX_FULL);
}

static void verdict_payload(pb *p, uint32_t token, uint32_t flags, float y, float x, float beta,
                            uint32_t n_past) {
    p->n = 0;
    p32(p, 1), p32(p, token), p32(p, flags), pf(p, y), pf(p, x), pf(p, beta), p64(p, 10);
    p32(p, 1), p32(p, 2), p32(p, 1), p32(p, 2), p32(p, n_past);
}

static void test_verdict_generate(void) {
    pb p;
    uhlm_wire_msg m;
    uhlm_wire_limits lim = {0, 0, 32000};
    verdict_payload(&p, 5, 1, 0.5f, 0.5f, 0.0f, 9);
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == 0);
    CHECK(m.u.verdict.accepted && !m.u.verdict.y_ge_x);
    verdict_payload(&p, 32000, 1, 0.5f, 0.5f, 0.0f, 9);
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_TOKEN);
    verdict_payload(&p, 5, 3, 0.5f, 0.5f, 0.0f, 9);
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == 0);
    verdict_payload(&p, 5, 4, 0.5f, 0.5f, 0.0f, 9);
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    verdict_payload(&p, 5, 0, 0.5f, 0.5f, 0.0f, 0);
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PAYLOAD);
    const float bad[] = {NAN, INFINITY, -INFINITY, -0.01f, 1.01f};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        verdict_payload(&p, 5, 0, bad[i], 0.5f, 0.0f, 9);
        CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PROBS);
        verdict_payload(&p, 5, 0, 0.5f, bad[i], 0.0f, 9);
        CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PROBS);
        verdict_payload(&p, 5, 0, 0.5f, 0.5f, bad[i], 9);
        CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == -UHLM_WIRE_E_BAD_PROBS);
    }
    verdict_payload(&p, 5, 0, 1.0005f, 0.0f, 1.0f, 9); /* within rounding slack */
    CHECK(dec(UHLM_WIRE_VERDICT, p.d, p.n, &lim, &m) == 0);

    /* GENERATE */
    uhlm_wire_msg g = sample(14);
    uhlm_wire_buf b = {0};
    uhlm_error err;
    g.u.generate.n_gen = 0;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    g.u.generate.n_gen = UHLM_WIRE_MAX_TOKENS + 1;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_TOO_LARGE);
    /* only the first generated token needs a position: the server stops at its context end */
    g.u.generate.n_gen = 10;
    g.u.generate.pos = UHLM_WIRE_MAX_CTX;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_CTX_FULL);
    g.u.generate.pos = UHLM_WIRE_MAX_CTX - 1;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == 0);
    b.len = 0;
    g.u.generate.flags = 2;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    g.u.generate.flags = UHLM_WIRE_GF_STOP_EOS;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == 0);
    b.len = 0;
    int bad_id[] = {5, 32000};
    g = sample(13);
    g.u.generate.catchup.ids = bad_id;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_BAD_TOKEN);

    /* GENERATED */
    g = sample(15);
    g.u.generated.tokens.n = 0;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    g.u.generated.tokens.n = 2;
    g.u.generated.tokens.ids = bad_id;
    CHECK(uhlm_wire_encode(&b, &g, &lim, &err) == -UHLM_WIRE_E_BAD_TOKEN);
    CHECK(b.len == 0);
    uhlm_wire_buf_free(&b);
}

static void test_error_stats_misc(void) {
    pb p;
    uhlm_wire_msg m;
    uhlm_wire_buf b = {0};
    uhlm_error err;
    /* every defined code encodes and decodes, and has a name */
    for (unsigned c = 1; c <= UHLM_WIRE_E_MAX; c++) {
        b.len = 0;
        CHECK(uhlm_wire_encode_error(&b, (uint16_t)c, 0, 3, &err, "code %u", c) == 0);
        size_t used;
        CHECK(uhlm_wire_frame_decode(b.data, b.len, NULL, &m, &used, &err) == 0);
        CHECK(m.type == UHLM_WIRE_ERROR && m.u.error.code == c && m.u.error.request_id == 3);
        CHECK(strcmp(uhlm_wire_code_name(c), "?") != 0);
    }
    CHECK(strcmp(uhlm_wire_code_name(UHLM_WIRE_E_BAD_TOKEN), "BAD_TOKEN") == 0);
    CHECK(strcmp(uhlm_wire_code_name(UHLM_WIRE_E_MAX + 1), "?") == 0);
    for (unsigned t = 1; t <= UHLM_WIRE_TYPE_MAX; t++) CHECK(strcmp(uhlm_wire_type_name(t), "?") != 0);
    CHECK(strcmp(uhlm_wire_type_name(UHLM_WIRE_VERIFY), "VERIFY") == 0);
    CHECK(strcmp(uhlm_wire_type_name(0), "?") == 0 && strcmp(uhlm_wire_type_name(999), "?") == 0);
    /* bad codes and flags */
    b.len = 0;
    CHECK(uhlm_wire_encode_error(&b, 0, 0, 0, &err, "x") == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(uhlm_wire_encode_error(&b, UHLM_WIRE_E_MAX + 1, 0, 0, &err, "x") ==
          -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(uhlm_wire_encode_error(&b, 1, 2, 0, &err, "x") == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(b.len == 0);
    /* long messages are cut to the limit, not refused */
    char big[3000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(uhlm_wire_encode_error(&b, UHLM_WIRE_E_INTERNAL, UHLM_WIRE_EF_FATAL, 0, &err, "%s", big) == 0);
    size_t used;
    CHECK(uhlm_wire_frame_decode(b.data, b.len, NULL, &m, &used, &err) == 0);
    CHECK(m.u.error.msg.len == UHLM_WIRE_MAX_ERRMSG && (m.u.error.flags & UHLM_WIRE_EF_FATAL));
    p.n = 0, p16(&p, 1), p16(&p, 0), p32(&p, 0), p16(&p, UHLM_WIRE_MAX_ERRMSG + 1);
    CHECK(dec(UHLM_WIRE_ERROR, p.d, p.n, NULL, &m) == -UHLM_WIRE_E_TOO_LARGE);

    /* STATS: any text without NUL, including empty */
    b.len = 0;
    CHECK(uhlm_wire_encode_stats(&b, "", 0, &err) == 0);
    CHECK(uhlm_wire_frame_decode(b.data, b.len, NULL, &m, &used, &err) == 0 && m.u.text.len == 0);
    CHECK(uhlm_wire_encode_stats(&b, "a\0b", 3, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(dec(UHLM_WIRE_STATS, (const uint8_t *)"ok\n", 3, NULL, &m) == 0 && m.u.text.len == 3);

    /* empty messages, PING/PONG */
    b.len = 0;
    CHECK(uhlm_wire_encode_empty(&b, UHLM_WIRE_STATS_REQ, &err) == 0 && b.len == 12);
    CHECK(uhlm_wire_encode_empty(&b, UHLM_WIRE_VERIFY, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(uhlm_wire_encode_ping(&b, UHLM_WIRE_PONG, 9, &err) == 0 && b.len == 12 + 20);
    CHECK(uhlm_wire_encode_ping(&b, UHLM_WIRE_CLOSE, 9, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(uhlm_wire_frame_decode(b.data + 12, b.len - 12, NULL, &m, &used, &err) == 0);
    CHECK(m.type == UHLM_WIRE_PONG && m.u.nonce == 9);
    CHECK(dec(UHLM_WIRE_PING, p.d, 7, NULL, &m) == -UHLM_WIRE_E_BAD_FRAME);
    CHECK(dec(UHLM_WIRE_PING, p.d, 9, NULL, &m) == -UHLM_WIRE_E_BAD_FRAME);
    CHECK(dec(UHLM_WIRE_CLOSE, p.d, 1, NULL, &m) == -UHLM_WIRE_E_BAD_FRAME);
    CHECK(dec(UHLM_WIRE_STATS_REQ, p.d, 4, NULL, &m) == -UHLM_WIRE_E_BAD_FRAME);
    CHECK(dec(UHLM_WIRE_CLOSE, NULL, 0, NULL, &m) == 0);
    uhlm_wire_buf_free(&b);
}

/* Encoders refuse what the receiver would refuse and leave the buffer untouched. */
static void test_encoder_limits(void) {
    uhlm_wire_buf b = {0};
    uhlm_error err;
    uhlm_wire_msg first = sample(19);
    CHECK(uhlm_wire_encode(&b, &first, NULL, &err) == 0);
    size_t before = b.len;
    uint8_t snapshot[64];
    memcpy(snapshot, b.data, before);

    uhlm_wire_limits lim = {UHLM_WIRE_MIN_FRAME, 0, 32000};
    uhlm_wire_msg v = sample(6);
    /* x larger than the receiver's frame limit */
    uint8_t *x = calloc(UHLM_WIRE_MIN_FRAME, 1);
    if (!x) abort();
    v.u.verify.x.p = x;
    v.u.verify.x.len = UHLM_WIRE_MIN_FRAME;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == -UHLM_WIRE_E_TOO_LARGE);
    CHECK(b.len == before && memcmp(b.data, snapshot, before) == 0);
    v.u.verify.x.len = UHLM_WIRE_MIN_FRAME - 100;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == 0);
    b.len = before;
    /* token ids: negative or beyond the receiver's vocabulary */
    int neg[] = {1, -1, 3};
    v.u.verify.catchup.ids = neg;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == -UHLM_WIRE_E_BAD_TOKEN && b.len == before);
    v = sample(6);
    v.u.verify.draft = 32000;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == -UHLM_WIRE_E_BAD_TOKEN && b.len == before);
    CHECK(strstr(err.msg, "draft") != NULL);
    /* a huge token count is refused before 4*n bytes are touched */
    v = sample(6);
    v.u.verify.catchup.n = 0xffffffffu;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == -UHLM_WIRE_E_TOO_LARGE && b.len == before);
    v.u.verify.catchup.ids = NULL;
    v.u.verify.catchup.n = 2;
    CHECK(uhlm_wire_encode(&b, &v, &lim, &err) == -UHLM_WIRE_E_BAD_PAYLOAD && b.len == before);
    /* more catch-up tokens than the receiver takes */
    int *many = calloc(100, sizeof *many);
    if (!many) abort();
    uhlm_wire_limits few = {0, 64, 32000};
    v = sample(6);
    v.u.verify.catchup.ids = many;
    v.u.verify.catchup.n = 65;
    CHECK(uhlm_wire_encode(&b, &v, &few, &err) == -UHLM_WIRE_E_TOO_LARGE && b.len == before);
    v.u.verify.catchup.n = 64;
    CHECK(uhlm_wire_encode(&b, &v, &few, &err) == 0);
    b.len = before;
    /* strings over the u16 range, names over their limit */
    uhlm_wire_msg h = sample(0);
    h.u.hello.client.len = 70000;
    h.u.hello.client.p = (const char *)x;
    CHECK(uhlm_wire_encode(&b, &h, NULL, &err) == -UHLM_WIRE_E_TOO_LARGE && b.len == before);
    memset(x, 'a', 300);
    h.u.hello.client.len = UHLM_WIRE_MAX_NAME + 1;
    CHECK(uhlm_wire_encode(&b, &h, NULL, &err) == -UHLM_WIRE_E_TOO_LARGE && b.len == before);
    h.u.hello.client.len = UHLM_WIRE_MAX_NAME;
    CHECK(uhlm_wire_encode(&b, &h, NULL, &err) == 0);
    b.len = before;
    /* unknown type */
    uhlm_wire_msg u;
    memset(&u, 0, sizeof u);
    u.type = 99;
    CHECK(uhlm_wire_encode(&b, &u, NULL, &err) == -UHLM_WIRE_E_UNKNOWN_TYPE && b.len == before);
    /* typed wrappers agree with the generic encoder */
    uhlm_wire_buf g = {0};
    uhlm_wire_msg o = sample(3);
    CHECK(uhlm_wire_encode(&g, &o, NULL, &err) == 0);
    CHECK(uhlm_wire_encode_open(&b, &o.u.open, NULL, &err) == 0);
    CHECK(b.len - before == g.len && memcmp(b.data + before, g.data, g.len) == 0);
    free(many);
    free(x);
    uhlm_wire_buf_free(&g);
    uhlm_wire_buf_free(&b);
    uhlm_wire_buf_free(&b); /* idempotent */
    CHECK(b.data == NULL && b.len == 0);
}

/* The largest legal VERIFY: max catch-up tokens, the rest x, exactly the frame limit. */
static void test_big_frame(void) {
    uhlm_wire_buf b = {0};
    uhlm_error err;
    int *ids = calloc(UHLM_WIRE_MAX_TOKENS, sizeof *ids);
    size_t fixed = 4 * 4 + 4 + 8 + 8 + 4; /* everything but the lists */
    size_t xlen = UHLM_WIRE_MAX_FRAME - fixed - 4 * (size_t)UHLM_WIRE_MAX_TOKENS;
    uint8_t *x = malloc(xlen + 1);
    if (!ids || !x) abort();
    memset(x, 7, xlen + 1);
    uhlm_wire_msg v = sample(6);
    v.u.verify.catchup.ids = ids;
    v.u.verify.catchup.n = UHLM_WIRE_MAX_TOKENS;
    v.u.verify.x.p = x;
    v.u.verify.x.len = (uint32_t)xlen;
    CHECKF(uhlm_wire_encode(&b, &v, NULL, &err) == 0, "%s", err.msg);
    CHECK(b.len == UHLM_WIRE_HEADER_SIZE + (size_t)UHLM_WIRE_MAX_FRAME);
    uhlm_wire_msg d;
    size_t used;
    CHECK(uhlm_wire_frame_decode(b.data, b.len, NULL, &d, &used, &err) == 0);
    CHECK(d.u.verify.catchup.n == UHLM_WIRE_MAX_TOKENS && d.u.verify.x.len == xlen);
    size_t keep = b.len;
    v.u.verify.x.len++;
    CHECK(uhlm_wire_encode(&b, &v, NULL, &err) == -UHLM_WIRE_E_TOO_LARGE && b.len == keep);
    free(ids);
    free(x);
    uhlm_wire_buf_free(&b);
}

/* Every typed encoder writes the same bytes as the generic one; NULL data with a nonzero
 * length is refused rather than dereferenced. */
static void test_typed_and_null(void) {
    uhlm_wire_limits lim = {0, 0, 32000};
    for (int i = 0; i < NSAMPLES; i++) {
        uhlm_wire_msg m = sample(i);
        uhlm_wire_buf g = {0}, t = {0};
        uhlm_error err;
        CHECK(uhlm_wire_encode(&g, &m, &lim, &err) == 0);
        int rc;
        switch (m.type) {
        case UHLM_WIRE_HELLO: rc = uhlm_wire_encode_hello(&t, &m.u.hello, &err); break;
        case UHLM_WIRE_WELCOME: rc = uhlm_wire_encode_welcome(&t, &m.u.welcome, &err); break;
        case UHLM_WIRE_OPEN: rc = uhlm_wire_encode_open(&t, &m.u.open, &lim, &err); break;
        case UHLM_WIRE_OPENED: rc = uhlm_wire_encode_opened(&t, &m.u.opened, &err); break;
        case UHLM_WIRE_VERIFY: rc = uhlm_wire_encode_verify(&t, &m.u.verify, &lim, &err); break;
        case UHLM_WIRE_VERDICT: rc = uhlm_wire_encode_verdict(&t, &m.u.verdict, &lim, &err); break;
        case UHLM_WIRE_GENERATE:
            rc = uhlm_wire_encode_generate(&t, &m.u.generate, &lim, &err);
            break;
        case UHLM_WIRE_GENERATED:
            rc = uhlm_wire_encode_generated(&t, &m.u.generated, &lim, &err);
            break;
        case UHLM_WIRE_ERROR:
            rc = uhlm_wire_encode_error(&t, m.u.error.code, m.u.error.flags, m.u.error.request_id,
                                        &err, "%.*s", (int)m.u.error.msg.len, m.u.error.msg.p);
            break;
        case UHLM_WIRE_STATS: rc = uhlm_wire_encode_stats(&t, m.u.text.p, m.u.text.len, &err); break;
        case UHLM_WIRE_PING: rc = uhlm_wire_encode_ping(&t, m.type, m.u.nonce, &err); break;
        default: rc = uhlm_wire_encode_empty(&t, m.type, &err); break;
        }
        CHECKF(rc == 0 && t.len == g.len && memcmp(t.data, g.data, g.len) == 0,
               "typed encoder for %s", uhlm_wire_type_name(m.type));
        uhlm_wire_buf_free(&g);
        uhlm_wire_buf_free(&t);
    }
    uhlm_wire_buf b = {0};
    uhlm_error err;
    uhlm_wire_msg m = sample(6);
    m.u.verify.x.p = NULL;
    CHECK(uhlm_wire_encode(&b, &m, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    m = sample(0);
    m.u.hello.client.p = NULL;
    CHECK(uhlm_wire_encode(&b, &m, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    m = sample(17);
    m.u.text.p = NULL;
    CHECK(uhlm_wire_encode(&b, &m, NULL, &err) == -UHLM_WIRE_E_BAD_PAYLOAD);
    CHECK(uhlm_wire_encode_stats(&b, "x", (size_t)UHLM_WIRE_MAX_FRAME + 1, &err) ==
          -UHLM_WIRE_E_TOO_LARGE);
    CHECK(b.len == 0);
    m = sample(10); /* greedy, x NULL and empty: fine */
    CHECK(uhlm_wire_encode(&b, &m, NULL, &err) == 0);
    uhlm_wire_buf_free(&b);
}

int main(void) {
    test_round_trips();
    test_stream();
    test_layouts();
    test_truncation();
    test_header();
    test_hello_welcome();
    test_open();
    test_verify();
    test_verdict_generate();
    test_error_stats_misc();
    test_encoder_limits();
    test_big_frame();
    test_typed_and_null();
    return check_report();
}
