/* eval_common.c: see eval_common.h. */
#include "cli/eval_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "uhlm/tokenizer.h"

void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && (size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + (size_t)k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

void sb_free(sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

void sb_csv_str(sbuf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        sb_printf(b, "%s", s);
        return;
    }
    sb_printf(b, "\"");
    for (const char *p = s; *p; p++) sb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    sb_printf(b, "\"");
}

int evc_check_pair(const char *cmd, const uhlm_model *slm, const uhlm_model *llm) {
    if (uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size &&
        uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(slm)) == uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)))
        return 0;
    fprintf(stderr,
            "uhlm %s: vocabulary mismatch: the SLM %s has %d tokens, the LLM %s has %d%s; both "
            "models must share one vocabulary\n",
            cmd, uhlm_model_path(slm), uhlm_model_config(slm)->vocab_size, uhlm_model_path(llm), uhlm_model_config(llm)->vocab_size,
            uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size ? " but different pieces" : "");
    return -1;
}

uint64_t evc_prompt_seed(uint64_t seed, const char *id) {
    uint64_t h = uhlm_fnv1a(UHLM_FNV_INIT, &seed, sizeof seed);
    return uhlm_fnv1a(h, id, strlen(id));
}

int evc_calib_sample(const uhlm_token_event *ev, uhlm_calib_sample *out) {
    if (!ev->verified || !ev->have_y || !isfinite(ev->u) || !isfinite(ev->beta)) return 0;
    /* β = 0 exactly when y[d] >= x̃[d]: accepted outright, with no coin flip */
    *out = (uhlm_calib_sample){ev->u, ev->beta, ev->accepted, ev->beta <= 0.0};
    return 1;
}

void evc_samples_push(evc_samples *a, const uhlm_calib_sample *smp) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 4096;
        uhlm_calib_sample *ns = realloc(a->s, sizeof *ns * nc);
        if (!ns) {
            a->oom = 1;
            return;
        }
        a->s = ns;
        a->cap = nc;
    }
    a->s[a->n++] = *smp;
}
