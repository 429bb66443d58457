/* wire.h: the device <-> server wire protocol as pure encode/decode functions (no I/O).
 *
 * Public on purpose: a program that embeds the verification engine (engine.h) behind its own
 * event loop or transport, instead of uhlm_server, speaks to devices (uhlm_remote_new) with
 * these functions, so the codec is part of the API like the engine itself.
 *
 * The normative spec is docs/protocol.md; this header mirrors it. A frame is a 12-byte
 * little-endian header (magic "UHLM", version u16, type u16, payload length u32) followed by
 * the payload. A receiver reads the header, validates it with uhlm_wire_frame_header_parse
 * (which bounds the payload length before anything is allocated), reads exactly h.len payload
 * bytes, then calls uhlm_wire_decode (or one uhlm_wire_decode_* per type).
 *
 * Contract:
 *  - Status: every fallible function returns 0 on success or a NEGATIVE protocol error code,
 *    -UHLM_WIRE_E_*, and fills err->msg with one line. Negative so that `rc < 0` works as
 *    everywhere else in libuhlm; a code rather than -1 so that a server can put -rc straight
 *    into an ERROR frame.
 *  - Decoders never allocate and never read outside [payload, payload + n). They are
 *    zero-copy: strings, byte blobs and token arrays in the decoded struct point into the
 *    payload, which must outlive the struct. Token ids stay in wire form (little-endian u32,
 *    possibly unaligned); read them with uhlm_wire_token_at or uhlm_wire_tokens_copy.
 *  - Decoders are strict: truncation, trailing bytes, counts beyond the payload or the
 *    limits, unknown enum values or flag bits, nonzero reserved fields, NUL bytes in text
 *    fields and non-finite floats where they are not allowed are all rejected. Hence every
 *    accepted payload has exactly one encoding, and decode(encode(m)) == m.
 *  - Encoders append one whole frame to a growable uhlm_wire_buf. They check their input with
 *    the decoder's rules (and the peer's limits, if given) so that nothing undecodable is ever
 *    sent; on any failure the buffer is left as it was.
 *  - Probability payloads (VERIFY's x bytes) are opaque here: the hybrid payload codec
 *    produces and validates them, and reports failures as UHLM_WIRE_E_BAD_PROBS.
 *  - No global mutable state; every function is reentrant. */
#ifndef UHLM_WIRE_H
#define UHLM_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "verify.h" /* uhlm_verdict, uhlm_cost */

#ifdef __cplusplus
extern "C" {
#endif

#define UHLM_WIRE_MAGIC "UHLM"   /* the first 4 bytes of every frame */
#define UHLM_WIRE_VERSION 1      /* protocol version carried in every header */
#define UHLM_WIRE_HEADER_SIZE 12 /* magic 4 + version 2 + type 2 + length 4 */

/* Limits (docs/protocol.md §Limits). */
#define UHLM_WIRE_MAX_FRAME (16u << 20)  /* payload bytes; default and hard ceiling */
#define UHLM_WIRE_MIN_FRAME (64u << 10)  /* the smallest max_frame a server may announce */
#define UHLM_WIRE_MAX_TOKENS (1u << 20)  /* ids per OPEN prompt / catch-up / GENERATE */
#define UHLM_WIRE_MAX_VOCAB (1u << 22)   /* largest vocabulary size */
#define UHLM_WIRE_MAX_CTX 0x7fffffffu    /* positions fit an int */
#define UHLM_WIRE_MAX_NAME 255u          /* model / client names */
#define UHLM_WIRE_MAX_AUTH 1024u         /* auth token bytes */
#define UHLM_WIRE_MAX_ERRMSG 1024u       /* ERROR message bytes */

/* Message types (header field `type`). */
enum {
    UHLM_WIRE_HELLO = 1,     /* device -> server */
    UHLM_WIRE_WELCOME = 2,   /* server -> device */
    UHLM_WIRE_OPEN = 3,      /* device -> server */
    UHLM_WIRE_OPENED = 4,    /* server -> device */
    UHLM_WIRE_VERIFY = 5,    /* device -> server */
    UHLM_WIRE_VERDICT = 6,   /* server -> device */
    UHLM_WIRE_GENERATE = 7,  /* device -> server (llm mode) */
    UHLM_WIRE_GENERATED = 8, /* server -> device */
    UHLM_WIRE_STATS_REQ = 9, /* device -> server, empty payload */
    UHLM_WIRE_STATS = 10,    /* server -> device, plain text */
    UHLM_WIRE_CLOSE = 11,    /* device -> server, and the server's reply; empty payload */
    UHLM_WIRE_ERROR = 12,    /* server -> device */
    UHLM_WIRE_PING = 13,     /* device -> server (keep-alive) */
    UHLM_WIRE_PONG = 14,     /* server -> device, echoes the nonce */
    UHLM_WIRE_TYPE_MAX = 14
};

/* Error codes: ERROR frames and the (negated) return value of every function here. */
enum {
    UHLM_WIRE_OK = 0,
    UHLM_WIRE_E_BAD_FRAME = 1,       /* truncated payload, trailing bytes, malformed field */
    UHLM_WIRE_E_BAD_MAGIC = 2,       /* header does not start with "UHLM" */
    UHLM_WIRE_E_BAD_VERSION = 3,     /* header or HELLO version not spoken here */
    UHLM_WIRE_E_TOO_LARGE = 4,       /* frame or count over a limit */
    UHLM_WIRE_E_UNKNOWN_TYPE = 5,    /* header type not in the table above */
    UHLM_WIRE_E_NOT_OPEN = 6,        /* VERIFY/GENERATE without an open session */
    UHLM_WIRE_E_BAD_TOKEN = 7,       /* token id >= vocab size */
    UHLM_WIRE_E_BAD_PROBS = 8,       /* non-finite, negative, or not summing to 1 */
    UHLM_WIRE_E_BAD_PAYLOAD = 9,     /* bad enum, flag bit, reserved field, float, string */
    UHLM_WIRE_E_CTX_FULL = 10,       /* positions beyond the session's context */
    UHLM_WIRE_E_AUTH = 11,           /* wrong or missing auth token */
    UHLM_WIRE_E_BUSY = 12,           /* too many sessions */
    UHLM_WIRE_E_VOCAB_MISMATCH = 13, /* fingerprint or vocab size differs from the server's */
    UHLM_WIRE_E_TIMEOUT = 14,        /* idle or read timeout */
    UHLM_WIRE_E_INTERNAL = 15,       /* server-side failure (allocation, model) */
    UHLM_WIRE_E_SHUTTING_DOWN = 16,  /* server is stopping */
    UHLM_WIRE_E_DESYNC = 17,         /* request's pos differs from the server's context */
    UHLM_WIRE_E_BAD_STATE = 18,      /* valid message at the wrong time (OPEN before HELLO...) */
    UHLM_WIRE_E_MAX = 18
};

/* OPEN modes */
enum { UHLM_WIRE_MODE_VERIFY = 0, UHLM_WIRE_MODE_GENERATE = 1 };

/* VERIFY payload encodings (kind) and the WELCOME bit mask of kinds a server accepts. */
enum { UHLM_WIRE_ENC_F32 = 0, UHLM_WIRE_ENC_F16 = 1, UHLM_WIRE_ENC_TOPK = 2 };
#define UHLM_WIRE_KIND_BIT(kind) (1u << (kind))
#define UHLM_WIRE_KINDS_ALL 0x7u

/* Flag bits; unknown bits are rejected. */
#define UHLM_WIRE_VF_GREEDY 0x1u   /* VERIFY: argmax rule; x ignored and may be empty */
#define UHLM_WIRE_GF_STOP_EOS 0x1u /* GENERATE: stop after an EOS token */
#define UHLM_WIRE_DF_ACCEPTED 0x1u /* VERDICT: the draft was accepted */
#define UHLM_WIRE_DF_Y_GE_X 0x2u   /* VERDICT: y[d] >= x[d], accepted outright (for TSR) */
#define UHLM_WIRE_EF_FATAL 0x1u    /* ERROR: the sender closes the connection after it */

typedef struct uhlm_wire_header {
    uint16_t version;
    uint16_t type;
    uint32_t len; /* payload bytes that follow the header */
} uhlm_wire_header;

/* What a receiver accepts. Zero fields (or a NULL pointer) mean the protocol defaults:
 * UHLM_WIRE_MAX_FRAME, UHLM_WIRE_MAX_TOKENS, UHLM_WIRE_MAX_VOCAB. A server passes its own
 * vocab size and announced limits; a device passes what WELCOME announced. */
typedef struct uhlm_wire_limits {
    uint32_t max_frame;  /* payload bytes */
    uint32_t max_tokens; /* ids in one prompt / catch-up / generated list */
    uint32_t vocab_size; /* every token id must be < this */
} uhlm_wire_limits;

/* A token list. Decoders set raw (n little-endian u32s inside the payload) and ids = NULL.
 * Encoders read ids when it is non-NULL, else raw, so a decoded message re-encodes as is. */
typedef struct uhlm_wire_tokens {
    const int *ids;
    const uint8_t *raw;
    uint32_t n;
} uhlm_wire_tokens;

/* Text (no NUL bytes, not NUL-terminated: print with "%.*s") and opaque bytes. */
typedef struct uhlm_wire_str {
    const char *p;
    uint32_t len;
} uhlm_wire_str;

typedef struct uhlm_wire_bytes {
    const uint8_t *p;
    uint32_t len;
} uhlm_wire_bytes;

typedef struct uhlm_wire_hello {
    uint16_t version;     /* the protocol version the device speaks */
    uint64_t fingerprint; /* uhlm_tokenizer_fingerprint of the device's vocabulary */
    uint32_t vocab_size;
    uhlm_wire_bytes auth; /* may be empty */
    uhlm_wire_str client; /* client name, for logs */
} uhlm_wire_hello;

typedef struct uhlm_wire_welcome {
    uint16_t version;
    uint64_t fingerprint;
    uint32_t vocab_size;
    uint32_t n_ctx;            /* max context per session */
    uint32_t max_sessions;
    uint32_t max_frame;        /* payload bytes the server accepts */
    uint32_t max_batch_tokens; /* ids per request the server accepts */
    uint32_t idle_timeout_ms;  /* 0: none */
    uint32_t payload_kinds;    /* UHLM_WIRE_KIND_BIT mask */
    uint64_t nonce;            /* per-connection, for log correlation */
    uhlm_wire_str model;       /* server model name */
} uhlm_wire_welcome;

typedef struct uhlm_wire_open {
    uint32_t mode; /* UHLM_WIRE_MODE_* */
    float temp;    /* >= 0, finite; 0 = greedy */
    uint32_t top_k; /* 0 = off */
    float top_p;   /* (0, 1] */
    uint64_t seed;
    uhlm_wire_tokens prompt; /* >= 1 token; on a resync, a prefix of the device context */
} uhlm_wire_open;

/* Cost of a request: the verifier's own type (uhlm/verify.h), encoded field by field. */
typedef uhlm_cost uhlm_wire_cost;

typedef struct uhlm_wire_opened {
    uint64_t session_id;
    uint32_t n_ctx;  /* this session's context size */
    uint32_t n_past; /* tokens the server holds (= prompt length) */
    uhlm_wire_cost cost; /* of the prefill */
} uhlm_wire_opened;

typedef struct uhlm_wire_verify {
    uint32_t request_id;
    uint32_t flags; /* UHLM_WIRE_VF_* */
    uint32_t pos;   /* tokens the device believes the server holds before catch-up */
    uhlm_wire_tokens catchup;
    uint32_t draft;
    uint64_t draw_seed; /* draws for position p: uhlm_hybrid_rng(draw_seed, p) */
    uint8_t kind;       /* UHLM_WIRE_ENC_* */
    uint8_t prob_bits;  /* topk: 8 or 16; dense: 0 */
    uint32_t k;         /* topk: 1..vocab; dense: 0 */
    uhlm_wire_bytes x;  /* encoded x, opaque here; nonempty unless greedy */
} uhlm_wire_verify;

/* VERDICT is the verifier's verdict (uhlm/verify.h) as is: the engine's result goes out,
 * and the device's verifier returns what comes in, without a copy in between. On the wire:
 * request_id, token, flags (UHLM_WIRE_DF_*: accepted, y_ge_x), y_d, x_d and beta as f32
 * (finite, in [0, 1]), cost, n_past (the server context length after committing token).
 * residual_fallback is not carried (decoded as 0). */
typedef uhlm_verdict uhlm_wire_verdict;

typedef struct uhlm_wire_generate {
    uint32_t request_id;
    uint32_t flags; /* UHLM_WIRE_GF_* */
    uint32_t pos;
    uhlm_wire_tokens catchup;
    uint32_t n_gen; /* 1..max_tokens; fewer come back at EOS or the context end */
    uint64_t draw_seed;
} uhlm_wire_generate;

typedef struct uhlm_wire_generated {
    uint32_t request_id;
    uhlm_wire_tokens tokens; /* >= 1, committed to the server's context */
    uhlm_wire_cost cost;
    uint32_t n_past;
} uhlm_wire_generated;

typedef struct uhlm_wire_errmsg {
    uint16_t code;  /* UHLM_WIRE_E_* (nonzero) */
    uint16_t flags; /* UHLM_WIRE_EF_* */
    uint32_t request_id; /* the request it answers; 0 when none */
    uhlm_wire_str msg;
} uhlm_wire_errmsg;

/* Any message. CLOSE and STATS_REQ have no body; STATS uses `text`; PING/PONG use `nonce`. */
typedef struct uhlm_wire_msg {
    uint16_t type;
    union {
        uhlm_wire_hello hello;
        uhlm_wire_welcome welcome;
        uhlm_wire_open open;
        uhlm_wire_opened opened;
        uhlm_wire_verify verify;
        uhlm_wire_verdict verdict;
        uhlm_wire_generate generate;
        uhlm_wire_generated generated;
        uhlm_wire_errmsg error;
        uhlm_wire_str text;
        uint64_t nonce;
    } u;
} uhlm_wire_msg;

/* Growable output buffer. A zeroed struct is an empty buffer; free with uhlm_wire_buf_free. */
typedef struct uhlm_wire_buf {
    uint8_t *data;
    size_t len, cap;
} uhlm_wire_buf;

UHLM_API void uhlm_wire_buf_free(uhlm_wire_buf *b);
/* Makes room for `extra` more bytes. 0, or -UHLM_WIRE_E_INTERNAL on overflow/allocation. */
UHLM_API int uhlm_wire_buf_reserve(uhlm_wire_buf *b, size_t extra, uhlm_error *err);

/* Names for logs: "VERIFY", "BAD_TOKEN"; "?" when unknown. */
UHLM_API const char *uhlm_wire_type_name(unsigned type);
UHLM_API const char *uhlm_wire_code_name(unsigned code);

/* Writes a header into out[0..12). */
UHLM_API void uhlm_wire_header_write(uint8_t *out, uint16_t type, uint32_t len);

/* Validates the first 12 bytes of buf (n < 12: BAD_FRAME). Checks, in order: magic
 * (BAD_MAGIC), version (BAD_VERSION), len <= max_len (TOO_LARGE; max_len 0 means
 * UHLM_WIRE_MAX_FRAME, larger values are clamped to it), type (UNKNOWN_TYPE). h is filled
 * whenever the magic matched, so after UNKNOWN_TYPE a receiver can skip h->len bytes and stay
 * in step; after the other errors the stream cannot be trusted. */
UHLM_API int uhlm_wire_frame_header_parse(const uint8_t *buf, size_t n, uhlm_wire_header *h,
                                 uint32_t max_len, uhlm_error *err);

/* Decodes payload[0..n) as a message of `type`. m->type is set to type. */
UHLM_API int uhlm_wire_decode(uint16_t type, const uint8_t *payload, size_t n,
                     const uhlm_wire_limits *lim, uhlm_wire_msg *m, uhlm_error *err);

/* Header + payload + decode from a buffer holding at least one whole frame; *consumed gets
 * the frame's size (12 + len) whenever the header was valid. A buffer shorter than the frame
 * it announces is BAD_FRAME. */
UHLM_API int uhlm_wire_frame_decode(const uint8_t *buf, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_msg *m, size_t *consumed, uhlm_error *err);

UHLM_API int uhlm_wire_decode_hello(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_hello *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_welcome(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                             uhlm_wire_welcome *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_open(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                          uhlm_wire_open *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_opened(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                            uhlm_wire_opened *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_verify(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                            uhlm_wire_verify *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_verdict(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                             uhlm_wire_verdict *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_generate(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                              uhlm_wire_generate *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_generated(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                               uhlm_wire_generated *m, uhlm_error *err);
UHLM_API int uhlm_wire_decode_error(const uint8_t *p, size_t n, const uhlm_wire_limits *lim,
                           uhlm_wire_errmsg *m, uhlm_error *err);

/* Appends one frame for m. lim (may be NULL) is the receiver's limits: a frame it would
 * refuse is refused here with the code it would send. */
UHLM_API int uhlm_wire_encode(uhlm_wire_buf *b, const uhlm_wire_msg *m, const uhlm_wire_limits *lim,
                     uhlm_error *err);

/* Typed conveniences over uhlm_wire_encode. */
UHLM_API int uhlm_wire_encode_hello(uhlm_wire_buf *b, const uhlm_wire_hello *m, uhlm_error *err);
UHLM_API int uhlm_wire_encode_welcome(uhlm_wire_buf *b, const uhlm_wire_welcome *m, uhlm_error *err);
UHLM_API int uhlm_wire_encode_open(uhlm_wire_buf *b, const uhlm_wire_open *m,
                          const uhlm_wire_limits *lim, uhlm_error *err);
UHLM_API int uhlm_wire_encode_opened(uhlm_wire_buf *b, const uhlm_wire_opened *m, uhlm_error *err);
UHLM_API int uhlm_wire_encode_verify(uhlm_wire_buf *b, const uhlm_wire_verify *m,
                            const uhlm_wire_limits *lim, uhlm_error *err);
UHLM_API int uhlm_wire_encode_verdict(uhlm_wire_buf *b, const uhlm_wire_verdict *m,
                             const uhlm_wire_limits *lim, uhlm_error *err);
UHLM_API int uhlm_wire_encode_generate(uhlm_wire_buf *b, const uhlm_wire_generate *m,
                              const uhlm_wire_limits *lim, uhlm_error *err);
UHLM_API int uhlm_wire_encode_generated(uhlm_wire_buf *b, const uhlm_wire_generated *m,
                               const uhlm_wire_limits *lim, uhlm_error *err);
/* ERROR with a printf-formatted message, truncated to UHLM_WIRE_MAX_ERRMSG bytes. */
UHLM_API int uhlm_wire_encode_error(uhlm_wire_buf *b, uint16_t code, uint16_t flags, uint32_t request_id,
                           uhlm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
UHLM_API int uhlm_wire_encode_stats(uhlm_wire_buf *b, const char *text, size_t len, uhlm_error *err);
/* CLOSE or STATS_REQ (empty payloads). */
UHLM_API int uhlm_wire_encode_empty(uhlm_wire_buf *b, uint16_t type, uhlm_error *err);
/* PING or PONG. */
UHLM_API int uhlm_wire_encode_ping(uhlm_wire_buf *b, uint16_t type, uint64_t nonce, uhlm_error *err);

/* Token i of a decoded or caller-built list (i < t->n). */
static inline uint32_t uhlm_wire_token_at(const uhlm_wire_tokens *t, uint32_t i) {
    if (t->ids) return (uint32_t)t->ids[i];
    const uint8_t *q = t->raw + 4 * (size_t)i;
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

/* Copies all t->n ids into out (which holds t->n ints). Decoded ids are < vocab_size <=
 * 2^22, so they always fit an int. */
UHLM_API void uhlm_wire_tokens_copy(const uhlm_wire_tokens *t, int *out);

/* A text view of a NUL-terminated C string. */
static inline uhlm_wire_str uhlm_wire_cstr(const char *s) {
    uhlm_wire_str r = {s, 0};
    if (s)
        while (s[r.len]) r.len++;
    return r;
}

#ifdef __cplusplus
}
#endif
#endif
