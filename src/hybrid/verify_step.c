/* verify_step.c: the verifier's per-request steps (verify.h), shared by the in-process
 * verifier and the server so that both decide exactly alike. */
#include "uhlm/verify.h"

int uhlm_verify_decode_x(const uhlm_payload_spec *enc, const uint8_t *bytes, size_t len, int n,
                         int d, float *x, uhlm_error *err) {
    if (d < 0 || d >= n) return uhlm_set_error(err, "verifier: draft %d outside [0, %d)", d, n);
    if (uhlm_payload_decode(enc, bytes, len, n, x, err) != 0) return -1;
    if (!(x[d] > 0.0f))
        return uhlm_set_error(err, "verifier: draft %d has probability 0 under x", d);
    return 0;
}

int uhlm_verify_logits(const uhlm_sampling *s, const float *logits, const float *x, int n, int d,
                       uint64_t draw_seed, int pos, float *y, uhlm_verdict *out,
                       uhlm_error *err) {
    int am = uhlm_sampling_probs(s, logits, n, y);
    if (am < 0) return uhlm_set_error(err, "verifier: out of memory");
    if (s->temp == 0.0f) return uhlm_verify_greedy(n, d, am, out, err);
    uhlm_rng rng;
    uhlm_hybrid_rng(&rng, draw_seed, (uint64_t)pos);
    return uhlm_verify(x, y, n, d, &rng, out, err);
}

int uhlm_generate_token(const uhlm_sampling *s, const float *logits, int n, uint64_t draw_seed,
                        int pos, float *y, uhlm_error *err) {
    int am = uhlm_sampling_probs(s, logits, n, y);
    if (am < 0) return uhlm_set_error(err, "verifier: out of memory");
    if (s->temp == 0.0f) return am;
    uhlm_rng rng;
    uhlm_hybrid_rng(&rng, draw_seed, (uint64_t)pos);
    int tok = uhlm_sample_weights(y, n, &rng);
    if (tok < 0) return uhlm_set_error(err, "verifier: y has no mass");
    return tok;
}
