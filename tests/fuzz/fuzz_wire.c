/* fuzz_wire.c: libFuzzer target for the wire protocol decoders (uhlm/wire.h).
 *
 * Every input is used twice:
 *  1. as a byte stream from the network: frames are parsed one after another, the way a
 *     server reads a connection (header, bounds, payload, decode), skipping unknown types;
 *  2. as a direct decoder call: byte 0 picks the message type, byte 1 the receiver's limits,
 *     the rest is the payload. This reaches deep fields without first having to guess a
 *     valid header.
 * Beyond "no crash, no sanitizer report", it checks the codec's contract on every accepted
 * message: re-encoding reproduces the input bytes exactly (decoding is strict, so the
 * encoding is canonical), every token is below the vocabulary, and every zero-copy pointer
 * lies inside the input.
 *
 * Built with -DUHLM_FUZZ_SEEDGEN instead of -fsanitize=fuzzer, the file is a small program
 * that writes a seed corpus of valid messages in both input forms into the directory given
 * as its argument (scripts/fuzz.sh does this). */
#include "uhlm/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef UHLM_FUZZ_SEEDGEN

/* The receiver's limits come from the input too, so that the limit checks are fuzzed along
 * with the parsing (a device's tiny vocab, a server's small frames, the defaults). */
static const uhlm_wire_limits *pick_limits(uint8_t sel, uhlm_wire_limits *l) {
    static const uint32_t vocabs[] = {0, 1, 2, 512, 32000, UHLM_WIRE_MAX_VOCAB, 65536, 3};
    static const uint32_t tokens[] = {0, 1, 4, 4096};
    memset(l, 0, sizeof *l);
    l->vocab_size = vocabs[sel & 7];
    l->max_tokens = tokens[(sel >> 3) & 3];
    l->max_frame = (sel & 0x20) ? UHLM_WIRE_MIN_FRAME : 0;
    return (sel & 0xc0) == 0xc0 ? NULL : l;
}

static void require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_wire: contract violated: %s\n", what);
        abort();
    }
}

static void in_input(const void *p, size_t len, const uint8_t *base, size_t n, const char *what) {
    if (len == 0) return;
    const uint8_t *q = p;
    require(q >= base && q <= base + n && len <= (size_t)(base + n - q), what);
}

static void check_tokens(const uhlm_wire_tokens *t, uint32_t vocab, const uint8_t *base,
                         size_t n) {
    require(t->ids == NULL, "decoded list has ids");
    in_input(t->raw, 4 * (size_t)t->n, base, n, "token list outside the input");
    for (uint32_t i = 0; i < t->n; i++) require(uhlm_wire_token_at(t, i) < vocab, "token >= vocab");
}

/* Field invariants the decoder promises, then the canonical re-encoding. */
static void check_accepted(const uhlm_wire_msg *m, const uhlm_wire_limits *lim,
                           const uint8_t *payload, size_t n) {
    uint32_t vocab = lim && lim->vocab_size ? lim->vocab_size : UHLM_WIRE_MAX_VOCAB;
    switch (m->type) {
    case UHLM_WIRE_HELLO:
        in_input(m->u.hello.auth.p, m->u.hello.auth.len, payload, n, "auth");
        in_input(m->u.hello.client.p, m->u.hello.client.len, payload, n, "client");
        require(memchr(m->u.hello.client.p ? m->u.hello.client.p : "", 0, m->u.hello.client.len) == NULL,
                "NUL in name");
        break;
    case UHLM_WIRE_WELCOME:
        in_input(m->u.welcome.model.p, m->u.welcome.model.len, payload, n, "model");
        require(m->u.welcome.max_frame >= UHLM_WIRE_MIN_FRAME, "max_frame");
        break;
    case UHLM_WIRE_OPEN:
        check_tokens(&m->u.open.prompt, vocab, payload, n);
        require(m->u.open.prompt.n >= 1, "empty prompt");
        require(m->u.open.temp >= 0.0f && m->u.open.top_p > 0.0f && m->u.open.top_p <= 1.0f,
                "sampling settings");
        break;
    case UHLM_WIRE_VERIFY:
        check_tokens(&m->u.verify.catchup, vocab, payload, n);
        require(m->u.verify.draft < vocab, "draft >= vocab");
        in_input(m->u.verify.x.p, m->u.verify.x.len, payload, n, "x");
        require(m->u.verify.kind <= UHLM_WIRE_ENC_TOPK, "kind");
        require(m->u.verify.kind != UHLM_WIRE_ENC_TOPK || m->u.verify.k <= vocab, "K > vocab");
        require((uint64_t)m->u.verify.pos + m->u.verify.catchup.n + 1 <= UHLM_WIRE_MAX_CTX, "ctx");
        break;
    case UHLM_WIRE_VERDICT:
        require(m->u.verdict.token >= 0 && (uint32_t)m->u.verdict.token < vocab, "verdict token");
        require(m->u.verdict.y_d >= 0.0f && m->u.verdict.x_d >= 0.0f && m->u.verdict.beta >= 0.0f,
                "probabilities");
        break;
    case UHLM_WIRE_GENERATE:
        check_tokens(&m->u.generate.catchup, vocab, payload, n);
        require(m->u.generate.n_gen >= 1, "n_gen");
        break;
    case UHLM_WIRE_GENERATED: check_tokens(&m->u.generated.tokens, vocab, payload, n); break;
    case UHLM_WIRE_ERROR:
        require(m->u.error.code >= 1 && m->u.error.code <= UHLM_WIRE_E_MAX, "error code");
        in_input(m->u.error.msg.p, m->u.error.msg.len, payload, n, "error message");
        break;
    case UHLM_WIRE_STATS: in_input(m->u.text.p, m->u.text.len, payload, n, "stats"); break;
    default: break;
    }

    uhlm_wire_buf b = {0};
    uhlm_error err;
    int rc = uhlm_wire_encode(&b, m, lim, &err);
    require(rc == 0, "an accepted message does not re-encode");
    require(b.len == UHLM_WIRE_HEADER_SIZE + n, "re-encoded length differs");
    require(n == 0 || memcmp(b.data + UHLM_WIRE_HEADER_SIZE, payload, n) == 0,
            "re-encoded bytes differ");
    uhlm_wire_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uhlm_error err;
    uhlm_wire_msg m;

    /* 1. a connection's byte stream */
    size_t off = 0;
    while (off < size) {
        size_t used = 0;
        int rc = uhlm_wire_frame_decode(data + off, size - off, NULL, &m, &used, &err);
        if (rc == 0) {
            require(used >= UHLM_WIRE_HEADER_SIZE && used <= size - off, "consumed");
            check_accepted(&m, NULL, data + off + UHLM_WIRE_HEADER_SIZE,
                           used - UHLM_WIRE_HEADER_SIZE);
        } else {
            require(rc < 0 && -rc <= UHLM_WIRE_E_MAX, "error code range");
            require(err.msg[0] != 0, "error without message");
            if (rc != -UHLM_WIRE_E_UNKNOWN_TYPE || used > size - off) break;
        }
        off += used;
    }

    /* 2. one decoder, chosen by the input */
    if (size >= 2) {
        uhlm_wire_limits l;
        const uhlm_wire_limits *lim = pick_limits(data[1], &l);
        uint16_t type = data[0] & 15;
        const uint8_t *payload = data + 2;
        size_t n = size - 2;
        int rc = uhlm_wire_decode(type, payload, n, lim, &m, &err);
        if (rc == 0)
            check_accepted(&m, lim, payload, n);
        else
            require(rc < 0 && -rc <= UHLM_WIRE_E_MAX && err.msg[0] != 0, "error reporting");
    }
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    int bad = w != n;
    if (fclose(f) != 0) bad = 1;
    if (bad) fprintf(stderr, "%s: write failed\n", path);
    return bad ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    static const int ids[] = {1, 450, 2, 31999, 13, 29871, 0, 7};
    static const uint8_t x[] = {0, 0, 0x80, 0x3f, 1, 2, 3, 4, 5, 6, 7, 8};
    uhlm_wire_msg ms[24];
    int nm = 0;
    memset(ms, 0, sizeof ms);

    ms[nm].type = UHLM_WIRE_HELLO;
    ms[nm].u.hello = (uhlm_wire_hello){1, 0x1234, 32000, {x, 4}, uhlm_wire_cstr("dev")};
    nm++;
    ms[nm].type = UHLM_WIRE_WELCOME;
    ms[nm].u.welcome = (uhlm_wire_welcome){1,    0x1234, 32000, 2048, 8, UHLM_WIRE_MAX_FRAME, 512,
                                           1000, 7,      99,    uhlm_wire_cstr("llm")};
    nm++;
    ms[nm].type = UHLM_WIRE_OPEN;
    ms[nm].u.open = (uhlm_wire_open){0, 0.7f, 40, 0.9f, 3, {ids, NULL, 5}};
    nm++;
    ms[nm].type = UHLM_WIRE_OPEN;
    ms[nm].u.open = (uhlm_wire_open){1, 0.0f, 0, 1.0f, 0, {ids, NULL, 1}};
    nm++;
    ms[nm].type = UHLM_WIRE_OPENED;
    ms[nm].u.opened = (uhlm_wire_opened){.session_id = 77, .n_ctx = 2048, .n_past = 5,
                                         .cost = {1000, 1, 5, 1, 5}};
    nm++;
    ms[nm].type = UHLM_WIRE_VERIFY;
    ms[nm].u.verify = (uhlm_wire_verify){1, 0, 5, {ids, NULL, 3}, 9, 0, UHLM_WIRE_ENC_F32, 0, 0,
                                         {x, 8}};
    nm++;
    ms[nm].type = UHLM_WIRE_VERIFY;
    ms[nm].u.verify = (uhlm_wire_verify){2, 0, 8, {ids, NULL, 0}, 3, 55, UHLM_WIRE_ENC_TOPK, 16,
                                         64, {x, sizeof x}};
    nm++;
    ms[nm].type = UHLM_WIRE_VERIFY;
    ms[nm].u.verify = (uhlm_wire_verify){3, UHLM_WIRE_VF_GREEDY, 9, {ids, NULL, 1}, 2, 0,
                                         UHLM_WIRE_ENC_F16, 0, 0, {NULL, 0}};
    nm++;
    ms[nm].type = UHLM_WIRE_VERDICT;
    ms[nm].u.verdict = (uhlm_wire_verdict){.request_id = 1, .token = 9,
                                           .accepted = 1, .y_ge_x = 1,
                                           .y_d = 0.5f, .x_d = 0.25f, .beta = 0.0f,
                                           .cost = {1000, 1, 4, 2, 7}, .n_past = 9};
    nm++;
    ms[nm].type = UHLM_WIRE_GENERATE;
    ms[nm].u.generate = (uhlm_wire_generate){4, UHLM_WIRE_GF_STOP_EOS, 5, {ids, NULL, 2}, 16, 9};
    nm++;
    ms[nm].type = UHLM_WIRE_GENERATED;
    ms[nm].u.generated = (uhlm_wire_generated){.request_id = 4, .tokens = {ids, NULL, 4},
                                               .cost = {5000, 4, 6, 1, 6}, .n_past = 11};
    nm++;
    ms[nm].type = UHLM_WIRE_ERROR;
    ms[nm].u.error = (uhlm_wire_errmsg){UHLM_WIRE_E_BAD_TOKEN, 0, 1, uhlm_wire_cstr("token 40000")};
    nm++;
    ms[nm].type = UHLM_WIRE_STATS;
    ms[nm].u.text = uhlm_wire_cstr("uhlm_sessions 1\n");
    nm++;
    ms[nm++].type = UHLM_WIRE_STATS_REQ;
    ms[nm++].type = UHLM_WIRE_CLOSE;
    ms[nm].type = UHLM_WIRE_PING;
    ms[nm++].u.nonce = 5;

    uhlm_wire_limits lim = {0, 0, 32000};
    uhlm_wire_buf all = {0};
    uhlm_error err;
    int rc = 0;
    for (int i = 0; i < nm && rc == 0; i++) {
        uhlm_wire_buf b = {0};
        char name[64];
        if (uhlm_wire_encode(&b, &ms[i], &lim, &err) != 0 ||
            uhlm_wire_encode(&all, &ms[i], &lim, &err) != 0) {
            fprintf(stderr, "seed %d: %s\n", i, err.msg);
            return 1;
        }
        snprintf(name, sizeof name, "frame-%02d-%s", i, uhlm_wire_type_name(ms[i].type));
        rc |= write_file(argv[1], name, b.data, b.len);
        /* the direct form: type byte, limits byte (vocab 32000), payload */
        uint8_t *d = malloc(b.len);
        if (!d) return 1;
        d[0] = (uint8_t)ms[i].type;
        d[1] = 4;
        memcpy(d + 2, b.data + UHLM_WIRE_HEADER_SIZE, b.len - UHLM_WIRE_HEADER_SIZE);
        snprintf(name, sizeof name, "direct-%02d-%s", i, uhlm_wire_type_name(ms[i].type));
        rc |= write_file(argv[1], name, d, b.len - UHLM_WIRE_HEADER_SIZE + 2);
        free(d);
        uhlm_wire_buf_free(&b);
    }
    /* a whole conversation in one stream */
    if (rc == 0) rc = write_file(argv[1], "stream-all", all.data, all.len);
    uhlm_wire_buf_free(&all);
    return rc ? 1 : 0;
}

#endif
