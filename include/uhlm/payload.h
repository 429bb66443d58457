/* payload.h: encodings of the device's distribution x for the uplink (DESIGN §3).
 *
 * Kinds (numbered as the wire protocol's UHLM_WIRE_ENC_*):
 *   f32       V little-endian IEEE-754 binary32 values              32·V bits
 *   f16       V little-endian binary16 values (round to nearest)     16·V bits
 *   topk:K[:B] the K most likely tokens (ties: lower index), as K (index, q) pairs,
 *             B = 8 (default) or 16 bits per q, ⌈log2 V⌉ bits per index:  K·(⌈log2 V⌉ + B) bits
 *
 * topk byte layout: one LSB-first bit stream of K entries in increasing index order, each the
 * index (⌈log2 V⌉ bits) then q (B bits), zero-padded to whole bytes. q is the probability in
 * units of 1/Q, Q = 2^B - 1, rounded by largest remainder so that Σq = round(Q·Σ_topK x)
 * (never above Q). Decoding gives q/Q to each listed token and spreads R = 1 - Σq/Q evenly
 * over the V - K others (K = V: the q are renormalised).
 *
 * Exactness rule: x̃ = decode(encode(x)) is a pure function of the bytes. The device draws its
 * draft from x̃ and the verifier tests it against the same x̃, whatever the encoding loses.
 * Dense decodes are renormalised in double to sum to 1 (as float values), so x̃ too is
 * defined by the bytes alone.
 *
 * Validation on decode (a server reads untrusted bytes): exact length; finite, non-negative
 * values; dense sums within 1e-3 (f32) or 1e-2 (f16, whose rounding and subnormals lose
 * more) of 1; topk indices < V and strictly increasing, Σq <= Q (and > 0 when K = V), zero
 * padding bits. Errors say what is wrong; the wire layer reports them as BAD_PROBS. */
#ifndef UHLM_PAYLOAD_H
#define UHLM_PAYLOAD_H

#include "common.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum uhlm_payload_kind {
    UHLM_PAYLOAD_F32 = 0,
    UHLM_PAYLOAD_F16 = 1,
    UHLM_PAYLOAD_TOPK = 2
} uhlm_payload_kind;

typedef struct uhlm_payload_spec {
    uhlm_payload_kind kind;
    int k;         /* topk: entries, 1..V; dense: 0 */
    int prob_bits; /* topk: 8 or 16; dense: 0 */
} uhlm_payload_spec;

/* "f32", "f16", "topk:K", "topk:K:8", "topk:K:16". */
UHLM_API int uhlm_payload_parse(const char *s, uhlm_payload_spec *out, uhlm_error *err);
/* The same syntax back ("topk:32:8"); returns the snprintf length. */
UHLM_API int uhlm_payload_format(const uhlm_payload_spec *s, char *buf, size_t cap);
/* Checks the spec against a vocabulary size (K <= V, prob bits, kind). */
UHLM_API int uhlm_payload_check(const uhlm_payload_spec *s, int n_vocab, uhlm_error *err);

/* ⌈log2 V⌉: bits of one token id (0 for V = 1). */
UHLM_API int uhlm_token_bits(int n_vocab);
/* Information bits of one encoded x, as the channel model counts them. */
UHLM_API uint64_t uhlm_payload_bits(const uhlm_payload_spec *s, int n_vocab);
/* Bytes of the encoding: ⌈bits / 8⌉. */
UHLM_API size_t uhlm_payload_bytes(const uhlm_payload_spec *s, int n_vocab);

/* Encodes x[0..n_vocab) (non-negative, summing to ~1) into out, which holds
 * uhlm_payload_bytes. Returns the bytes written, or -1. scratch-free except topk with
 * K > 64, which allocates. */
UHLM_API long uhlm_payload_encode(const uhlm_payload_spec *s, const float *x, int n_vocab, uint8_t *out,
                         size_t cap, uhlm_error *err);
/* x̃[0..n_vocab) from exactly uhlm_payload_bytes bytes. 0 or -1. */
UHLM_API int uhlm_payload_decode(const uhlm_payload_spec *s, const uint8_t *in, size_t len, int n_vocab,
                        float *x_out, uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
