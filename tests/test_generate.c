/* test_generate.c: uhlm_generate and the cancel callback on the real model pair. The one-call
 * form gives the device loop's tokens for every mode; a cancel stops before the next token
 * with UHLM_CANCELLED, keeping what was generated; a device cancelled and then resumed gives
 * the uninterrupted run's tokens; the accessors and the version agree with the headers. */
#include "check.h"
#include "uhlm/generate.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

#define PROMPT "Once upon a time, there was a little girl named Lily."

typedef struct {
    int tokens[512];
    int n;
    int cancel_at; /* cancel once n reaches it; -1 never */
} tape;

static void on_token(void *user, const uhlm_token_event *ev) {
    tape *t = user;
    if (t->n < 512) t->tokens[t->n++] = ev->token;
}

static int cancel_at(void *user) {
    const tape *t = user;
    return t->cancel_at >= 0 && t->n >= t->cancel_at;
}

/* The device driven directly, as uhlm run does: the tokens into *t. */
static int device_tokens(const uhlm_model *slm, const uhlm_model *llm,
                         const uhlm_device_params *dp, uint64_t seed, tape *t,
                         int cancel_then_resume) {
    uhlm_error err;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_ctx *sc = uhlm_ctx_new(slm, &cp, &err);
    uhlm_verifier *v = dp->policy.mode == UHLM_MODE_SLM ? NULL : uhlm_verifier_inproc_new(llm, &cp, &err);
    uhlm_device *d = sc ? uhlm_device_new(sc, 0, v, NULL, dp, &err) : NULL;
    int ids[256], rc = -1;
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(slm);
    int np = uhlm_tokenize(tok, PROMPT, strlen(PROMPT), uhlm_tokenizer_add_bos(tok), 0, ids, 256, &err);
    t->n = 0;
    if (d && np > 0 && uhlm_device_start(d, ids, np, seed, &err) == 0) {
        uhlm_device_set_callback(d, on_token, t);
        if (cancel_then_resume) {
            t->cancel_at = 7;
            uhlm_device_set_cancel(d, cancel_at, t);
            rc = uhlm_device_run(d, &err);
            CHECKF(rc == UHLM_CANCELLED && t->n == 7, "rc %d n %d", rc, t->n);
            CHECK(uhlm_device_get_stats(d)->stop && !strcmp(uhlm_device_get_stats(d)->stop, "cancelled"));
            int tok1;
            CHECK(uhlm_device_step(d, &tok1, &err) == UHLM_CANCELLED && t->n == 7);
            t->cancel_at = -1; /* resume */
        }
        rc = uhlm_device_run(d, &err) < 0 ? -1 : 0;
    }
    if (rc != 0) fprintf(stderr, "device_tokens: %s\n", err.msg);
    uhlm_device_free(d);
    uhlm_verifier_free(v);
    uhlm_ctx_free(sc);
    return rc;
}

int main(void) {
    uhlm_error err;
    const char *tp = uhlm_test_model_path("tok512.bin");
    uhlm_model *slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"), tp, &err);
    uhlm_model *llm = slm ? uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"), tp, &err) : NULL;
    if (!slm || !llm) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    CHECK(!strcmp(uhlm_version(), UHLM_VERSION));
    CHECK(uhlm_model_n_vocab(slm) == 512 && uhlm_model_config(slm)->vocab_size == 512);
    CHECK(uhlm_model_tokenizer(slm) && uhlm_tokenizer_vocab_size(uhlm_model_tokenizer(slm)) == 512);
    CHECK(strstr(uhlm_model_path(llm), "stories-llm-2.76M.bin") != NULL);
    CHECK(uhlm_model_weight_type(llm) == UHLM_TYPE_F32 && !uhlm_model_is_synthetic(llm));
    size_t tl = 1;
    CHECK(uhlm_model_chat_template(slm, &tl) == NULL && tl == 0);

    const uhlm_mode modes[] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM, UHLM_MODE_RAND,
                               UHLM_MODE_UHLM};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        uhlm_generate_params p = uhlm_generate_default_params();
        p.device.policy.mode = modes[i];
        p.device.n_gen = 40;
        p.seed = 7;
        p.ctx.n_threads = 1;
        tape a = {.cancel_at = -1}, b = {.cancel_at = -1};
        p.on_token = on_token;
        p.on_token_user = &a;
        char *text = NULL;
        uhlm_device_report rep;
        int rc = uhlm_generate(slm, llm, PROMPT, &p, &text, &rep, &err);
        CHECKF(rc == 0 && text, "%s: %s", uhlm_mode_name(modes[i]), err.msg);
        CHECK(rep.stats.generated == a.n && rep.params.policy.mode == modes[i] && rep.seed == 7);
        CHECK(device_tokens(slm, llm, &p.device, 7, &b, 0) == 0);
        CHECKF(a.n == b.n && !memcmp(a.tokens, b.tokens, sizeof(int) * (size_t)a.n),
               "%s: uhlm_generate's tokens differ from the device's", uhlm_mode_name(modes[i]));
        /* the text is the tokens' text after the prompt */
        char *want = NULL;
        if (a.n > 0) {
            const uhlm_tokenizer *tok = uhlm_model_tokenizer(slm);
            int ids[600];
            int np = uhlm_tokenize(tok, PROMPT, strlen(PROMPT), 1, 0, ids, 256, &err);
            int n = np;
            for (int k = 0; k < a.n; k++)
                if (!uhlm_tokenizer_is_eog(tok, a.tokens[k])) ids[n++] = a.tokens[k];
            char *all = uhlm_detokenize(tok, ids, n), *pre = uhlm_detokenize(tok, ids, np);
            if (all && pre && strlen(all) >= strlen(pre)) want = strdup(all + strlen(pre));
            free(all);
            free(pre);
        }
        CHECKF(text && want && !strcmp(text, want), "%s: text '%s' want '%s'",
               uhlm_mode_name(modes[i]), text ? text : "(null)", want ? want : "(null)");
        free(want);
        free(text);

        /* cancelled after 5 tokens: UHLM_CANCELLED, the first 5 tokens, their text */
        tape c = {.cancel_at = 5};
        p.on_token_user = &c;
        p.cancel = cancel_at;
        p.cancel_user = &c;
        rc = uhlm_generate(slm, llm, PROMPT, &p, &text, &rep, &err);
        CHECKF(rc == UHLM_CANCELLED && text && c.n == 5 && rep.stats.generated == 5 &&
                   !strcmp(rep.stats.stop, "cancelled") && !memcmp(c.tokens, a.tokens, sizeof(int) * 5),
               "%s: cancel: rc %d n %d", uhlm_mode_name(modes[i]), rc, c.n);
        free(text);

        /* a device cancelled at 7 tokens and resumed gives the uninterrupted tokens */
        tape r = {.cancel_at = -1};
        CHECK(device_tokens(slm, llm, &p.device, 7, &r, 1) == 0);
        CHECKF(r.n == b.n && !memcmp(r.tokens, b.tokens, sizeof(int) * (size_t)b.n),
               "%s: resumed run differs", uhlm_mode_name(modes[i]));
    }

    /* refusals */
    uhlm_generate_params p = uhlm_generate_default_params();
    char *text = (char *)1;
    CHECK(uhlm_generate(NULL, llm, PROMPT, &p, &text, NULL, &err) == -1 && !text &&
          strstr(err.msg, "needs an SLM"));
    p.device.policy.mode = UHLM_MODE_HLM;
    CHECK(uhlm_generate(slm, NULL, PROMPT, &p, &text, NULL, &err) == -1 && strstr(err.msg, "needs an LLM"));

    uhlm_model_free(slm);
    uhlm_model_free(llm);
    return check_report();
}
