/* fuzz_server.c: libFuzzer target for the server's connection handling (src/net/server.c),
 * through the in-memory transport of src/net/server_internal.h: no sockets, but the same
 * frame assembly, handlers, admission state, compute queue and replies as a TCP connection.
 *
 * One server (2 sessions, 64 positions, the stories260K model as its LLM, no auth) lives for
 * the whole run; every input is a fresh connection. Byte 0 of the input picks how the rest
 * is cut into chunks (so that frames split across reads are covered); the chunks are fed
 * one after another, then the connection hangs up. Beyond "no crash, no sanitizer report",
 * it checks that every byte the server sends decodes as a sequence of valid frames, and
 * that a closed connection leaves no session behind.
 *
 * The model is found through $UHLM_MODELS, ./models or ../shared/models; without it the
 * target says so once and runs nothing.
 *
 * Built with -DUHLM_FUZZ_SEEDGEN instead of -fsanitize=fuzzer, the file is a small program
 * that writes the seed corpus (tests/fuzz/seeds/server/) into the directory given as its
 * argument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/server_internal.h"
#include "uhlm/model.h"
#include "uhlm/wire.h"

#define FZ_VOCAB 512

#ifndef UHLM_FUZZ_SEEDGEN

static void require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_server: contract violated: %s\n", what);
        abort();
    }
}

static uhlm_server *fz_server(void) {
    static uhlm_server *s;
    static int tried;
    if (tried) return s;
    tried = 1;
    const char *dirs[] = {getenv("UHLM_MODELS"), "models", "../shared/models", "../../shared/models"};
    char path[1024];
    uhlm_model *m = NULL;
    uhlm_error err;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs && !m; i++) {
        if (!dirs[i]) continue;
        snprintf(path, sizeof path, "%s/stories260K.bin", dirs[i]);
        if (access(path, R_OK) == 0) m = uhlm_model_load(path, NULL, &err);
    }
    if (!m) {
        fprintf(stderr, "fuzz_server: stories260K.bin not found (set UHLM_MODELS); nothing is run\n");
        return NULL;
    }
    uhlm_server_params p = uhlm_server_default_params();
    p.max_sessions = 2;
    p.max_ctx = 64;
    p.n_threads = 1;
    p.step_tokens = 16; /* prefills take several steps: covers the chunking */
    s = uhlm_server_new(m, &p, &err);
    if (!s) fprintf(stderr, "fuzz_server: %s\n", err.msg);
    /* m and s live until the process ends, like the fuzzer's own state */
    return s;
}

/* Everything the server sent must be whole, decodable frames. */
static void check_replies(const uhlm_wire_buf *out) {
    size_t off = 0;
    uhlm_wire_limits lim = {0, 0, FZ_VOCAB};
    while (off < out->len) {
        uhlm_wire_header h;
        uhlm_wire_msg m;
        uhlm_error e;
        require(out->len - off >= UHLM_WIRE_HEADER_SIZE, "a reply is cut short");
        require(uhlm_wire_frame_header_parse(out->data + off, UHLM_WIRE_HEADER_SIZE, &h, 0, &e) == 0,
                "a reply header does not parse");
        require(out->len - off - UHLM_WIRE_HEADER_SIZE >= h.len, "a reply payload is cut short");
        require(uhlm_wire_decode(h.type, out->data + off + UHLM_WIRE_HEADER_SIZE, h.len, &lim, &m,
                                 &e) == 0,
                "a reply does not decode");
        off += UHLM_WIRE_HEADER_SIZE + h.len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uhlm_server *s = fz_server();
    if (!s || size == 0) return 0;
    uhlm_server_conn *c = uhlm_server_test_conn(s);
    require(c != NULL, "no room for a connection");
    uhlm_wire_buf out = {0};
    /* byte 0: chunk length 1 << (b & 15) bytes (1 .. 32 KiB), so reads end mid-frame */
    size_t chunk = (size_t)1 << (data[0] & 15);
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    int closed = 0;
    while (left && !closed) {
        size_t n = left < chunk ? left : chunk;
        closed = uhlm_server_test_feed(s, c, p, n, &out);
        p += n;
        left -= n;
    }
    if (!closed) uhlm_server_test_close(s, c);
    check_replies(&out);
    uhlm_server_counters k;
    uhlm_server_get_counters(s, &k);
    require(k.open_sessions == 0, "a closed connection left its session open");
    uhlm_wire_buf_free(&out);
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN: write the seed corpus */

static int put(const char *dir, const char *name, uint8_t split, const uhlm_wire_buf *b) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    int ok = fwrite(&split, 1, 1, f) == 1 && (b->len == 0 || fwrite(b->data, 1, b->len, f) == b->len);
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static void hello(uhlm_wire_buf *b) {
    uhlm_error e;
    uhlm_wire_hello h = {1, 0, FZ_VOCAB, {NULL, 0}, uhlm_wire_cstr("seed")};
    uhlm_wire_encode_hello(b, &h, &e);
}

static void open_(uhlm_wire_buf *b, uint32_t mode, float temp, int n) {
    int prompt[40];
    uhlm_error e;
    prompt[0] = 1;
    for (int i = 1; i < n; i++) prompt[i] = 3 + (i * 17) % 500;
    uhlm_wire_open o = {mode, temp, 0, 1.0f, 7, {prompt, NULL, (uint32_t)n}};
    uhlm_wire_encode_open(b, &o, NULL, &e);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    uhlm_wire_buf b = {0};
    uhlm_error e;
    int rc = 0;
    /* a greedy verify session: OPEN, VERIFY with a catch-up, VERIFY, CLOSE */
    hello(&b);
    open_(&b, UHLM_WIRE_MODE_VERIFY, 0.0f, 40);
    int cu[3] = {5, 6, 7};
    uhlm_wire_verify v;
    memset(&v, 0, sizeof v);
    v.request_id = 1;
    v.flags = UHLM_WIRE_VF_GREEDY;
    v.pos = 40;
    v.catchup = (uhlm_wire_tokens){cu, NULL, 3};
    v.draft = 9;
    uhlm_wire_encode_verify(&b, &v, NULL, &e);
    v.request_id = 2;
    v.pos = 44;
    v.catchup.n = 0;
    uhlm_wire_encode_verify(&b, &v, NULL, &e);
    uhlm_wire_encode_empty(&b, UHLM_WIRE_CLOSE, &e);
    rc |= put(dir, "verify_greedy", 15, &b);
    rc |= put(dir, "verify_greedy_split", 3, &b);
    b.len = 0;
    /* a sampled session with a topk x */
    hello(&b);
    open_(&b, UHLM_WIRE_MODE_VERIFY, 1.0f, 4);
    uint8_t x[6] = {3, 0, 9, 0, 200, 55};
    v.request_id = 3;
    v.flags = 0;
    v.pos = 4;
    v.draft = 9;
    v.kind = UHLM_WIRE_ENC_TOPK;
    v.prob_bits = 8;
    v.k = 2;
    v.x = (uhlm_wire_bytes){x, sizeof x};
    uhlm_wire_encode_verify(&b, &v, NULL, &e);
    rc |= put(dir, "verify_topk", 15, &b);
    b.len = 0;
    /* generate mode */
    hello(&b);
    open_(&b, UHLM_WIRE_MODE_GENERATE, 0.8f, 6);
    uhlm_wire_generate g = {4, UHLM_WIRE_GF_STOP_EOS, 6, {NULL, NULL, 0}, 12, 5};
    uhlm_wire_encode_generate(&b, &g, NULL, &e);
    rc |= put(dir, "generate", 15, &b);
    b.len = 0;
    /* PING, STATS, a second HELLO, an unknown type, a server-only message, CLOSE in READY */
    hello(&b);
    uhlm_wire_encode_ping(&b, UHLM_WIRE_PING, 77, &e);
    uhlm_wire_encode_empty(&b, UHLM_WIRE_STATS_REQ, &e);
    hello(&b);
    size_t at = b.len;
    uhlm_wire_buf_reserve(&b, 16, &e);
    uhlm_wire_header_write(b.data + at, 99, 4);
    memset(b.data + at + UHLM_WIRE_HEADER_SIZE, 0xab, 4);
    b.len = at + 16;
    uhlm_wire_encode_ping(&b, UHLM_WIRE_PONG, 1, &e);
    uhlm_wire_encode_empty(&b, UHLM_WIRE_CLOSE, &e);
    rc |= put(dir, "control", 15, &b);
    b.len = 0;
    /* before HELLO: garbage */
    const char *junk = "GET / HTTP/1.1\r\n\r\n";
    uhlm_wire_buf_reserve(&b, strlen(junk), &e);
    memcpy(b.data, junk, strlen(junk));
    b.len = strlen(junk);
    rc |= put(dir, "garbage", 15, &b);
    b.len = 0;
    /* a VERIFY without a session, a DESYNC, an over-long OPEN */
    hello(&b);
    v.request_id = 5;
    v.flags = UHLM_WIRE_VF_GREEDY;
    v.kind = 0;
    v.prob_bits = 0;
    v.k = 0;
    v.x = (uhlm_wire_bytes){NULL, 0};
    v.pos = 0;
    uhlm_wire_encode_verify(&b, &v, NULL, &e);
    open_(&b, UHLM_WIRE_MODE_VERIFY, 0.0f, 3);
    v.pos = 9;
    uhlm_wire_encode_verify(&b, &v, NULL, &e);
    rc |= put(dir, "refusals", 15, &b);
    uhlm_wire_buf_free(&b);
    return rc ? 1 : 0;
}

#endif
