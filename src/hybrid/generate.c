/* generate.c: uhlm_generate, the one-call form of `uhlm run` in process (generate.h). */
#include "uhlm/generate.h"

#include <stdlib.h>
#include <string.h>

#include "uhlm/tokenizer.h"
#include "uhlm/verifier.h"

uhlm_generate_params uhlm_generate_default_params(void) {
    uhlm_generate_params p;
    memset(&p, 0, sizeof p);
    p.device = uhlm_device_default_params();
    p.ctx = uhlm_ctx_default_params();
    p.add_bos = -1;
    return p;
}

/* A growing NUL-terminated string. */
typedef struct {
    char *s;
    size_t len, cap;
} text_buf;

static int text_add(text_buf *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) return -1;
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 0;
}

/* Runs the device to the end (or a cancel), appending the generated text. The prompt goes
 * through the detokenizer first so the first generated piece decodes as it does after the
 * prompt in `uhlm run` (SentencePiece drops the leading space only right after BOS). */
static int drive(uhlm_device *dev, const uhlm_tokenizer *tok, const int *ids, int np,
                 text_buf *out, uhlm_error *err) {
    int maxp = uhlm_tokenizer_max_piece_len(tok) + 16;
    char *piece = malloc((size_t)maxp);
    if (!piece) return uhlm_set_error(err, "generate: out of memory");
    uhlm_detok dt;
    uhlm_detok_init(&dt, tok);
    for (int i = 0; i < np; i++) uhlm_detok_push(&dt, ids[i], piece, (size_t)maxp);
    int t, r, rc = 0;
    while ((r = uhlm_device_step(dev, &t, err)) == 1) {
        if (uhlm_tokenizer_is_eog(tok, t)) continue;
        size_t k = uhlm_detok_push(&dt, t, piece, (size_t)maxp);
        if (text_add(out, piece, k) != 0) {
            rc = uhlm_set_error(err, "generate: out of memory");
            break;
        }
    }
    if (rc == 0 && r < 0) rc = r; /* -1 or UHLM_CANCELLED; err is set */
    size_t k = uhlm_detok_flush(&dt, piece, (size_t)maxp);
    if (rc != -1 && text_add(out, piece, k) != 0) rc = uhlm_set_error(err, "generate: out of memory");
    free(piece);
    return rc;
}

int uhlm_generate(const uhlm_model *slm, const uhlm_model *llm, const char *prompt,
                  const uhlm_generate_params *p, char **text, uhlm_device_report *report,
                  uhlm_error *err) {
    *text = NULL;
    uhlm_mode mode = p->device.policy.mode;
    if (!prompt) return uhlm_set_error(err, "generate: no prompt");
    if (mode != UHLM_MODE_LLM && !slm)
        return uhlm_set_error(err, "generate: mode %s needs an SLM", uhlm_mode_name(mode));
    if (mode != UHLM_MODE_SLM && !llm)
        return uhlm_set_error(err, "generate: mode %s needs an LLM", uhlm_mode_name(mode));
    const uhlm_model *vm = slm ? slm : llm;
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(vm);
    if (!tok)
        return uhlm_set_error(err, "generate: %s has no vocabulary (load it with a tokenizer)",
                              uhlm_model_path(vm));

    int rc = -1;
    uhlm_ctx *slm_ctx = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_device *dev = NULL;
    int *ids = NULL;
    text_buf out = {NULL, 0, 0};
    /* as `uhlm run`: the SLM context exists in llm mode too, so every mode stops at the same
     * length */
    if (slm && !(slm_ctx = uhlm_ctx_new(slm, &p->ctx, err))) goto done;
    if (mode != UHLM_MODE_SLM && !(ver = uhlm_verifier_inproc_new(llm, &p->ctx, err))) goto done;
    if (!(dev = uhlm_device_new(slm_ctx, 0, ver, NULL, &p->device, err))) goto done;
    int n_ctx = uhlm_device_n_ctx(dev);
    if (!(ids = malloc(sizeof(int) * ((size_t)n_ctx + 1)))) {
        uhlm_set_error(err, "generate: out of memory");
        goto done;
    }
    int add_bos = p->add_bos >= 0 ? p->add_bos : uhlm_tokenizer_add_bos(tok);
    int np = uhlm_tokenize(tok, prompt, strlen(prompt), add_bos, 0, ids, n_ctx + 1, err);
    if (np < 0) goto done;
    if (np >= n_ctx) {
        uhlm_set_error(err, "generate: the prompt is %d tokens, the context holds %d", np, n_ctx);
        goto done;
    }
    if (p->on_token) uhlm_device_set_callback(dev, p->on_token, p->on_token_user);
    if (p->cancel) uhlm_device_set_cancel(dev, p->cancel, p->cancel_user);
    if (uhlm_device_start(dev, ids, np, p->seed, err) != 0) goto done;
    rc = drive(dev, tok, ids, np, &out, err);
    if (rc != -1 && !out.s && text_add(&out, "", 0) != 0)
        rc = uhlm_set_error(err, "generate: out of memory");
    if (rc != -1 && report) uhlm_device_get_report(dev, report);

done:
    if (rc == -1) {
        free(out.s);
        out.s = NULL;
    }
    *text = out.s;
    free(ids);
    uhlm_device_free(dev);
    uhlm_verifier_free(ver);
    uhlm_ctx_free(slm_ctx);
    return rc;
}
