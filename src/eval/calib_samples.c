/* calib_samples.c: calibration samples from hlm runs (calib_samples.h). */
#include "uhlm/calib_samples.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/strbuf.h"
#include "uhlm/harness.h"
#include "uhlm/hybrid.h"

int uhlm_calib_sample_of_event(const uhlm_token_event *ev, uhlm_calib_sample *out) {
    if (!ev->verified || !ev->have_y || !isfinite(ev->u) || !isfinite(ev->beta)) return 0;
    /* β = 0 exactly when y[d] >= x̃[d]: accepted outright, with no coin flip */
    *out = (uhlm_calib_sample){ev->u, ev->beta, ev->accepted, ev->beta <= 0.0};
    return 1;
}

void uhlm_calib_samples_push(uhlm_calib_samples *a, const uhlm_calib_sample *smp) {
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

void uhlm_calib_samples_free(uhlm_calib_samples *a) {
    free(a->s);
    memset(a, 0, sizeof *a);
}

void uhlm_calib_collection_free(uhlm_calib_collection *c) {
    uhlm_calib_samples_free(&c->train);
    uhlm_calib_samples_free(&c->test);
    free(c->csv);
    memset(c, 0, sizeof *c);
}

typedef struct {
    uhlm_calib_collection *out;
    ebuf *csv; /* NULL: no per-token records */
    const char *id;
    int is_train;
} collector;

static void on_token(void *user, const uhlm_token_event *ev) {
    collector *c = user;
    uhlm_calib_sample smp;
    if (!uhlm_calib_sample_of_event(ev, &smp)) return;
    uhlm_calib_samples_push(c->is_train ? &c->out->train : &c->out->test, &smp);
    if (c->csv) {
        eb_csv_str(c->csv, c->id);
        eb_printf(c->csv, ",%s,%d,%d,%d,%d,%.6f,%.9g,%.9g,%.9g,%d,%d\n",
                  c->is_train ? "train" : "test", ev->index, ev->pos, ev->draft, ev->token, ev->u,
                  ev->beta, ev->x_d, ev->y_d, ev->accepted, smp.outright);
    }
}

/* The prompts in use, one device run each; the device and its contexts are set up by the
 * caller. */
static int collect_prompts(uhlm_device *dev, const uhlm_model *slm, const uhlm_prompt_set *ps,
                           const uhlm_calib_collect_opts *o, collector *col, int *ids,
                           uhlm_progress *pg, uhlm_error *err) {
    int n_ctx = uhlm_device_n_ctx(dev);
    int n_use = o->limit > 0 && o->limit < ps->n ? o->limit : ps->n;
    uhlm_calib_collection *out = col->out;
    for (int i = 0; i < n_use; i++) {
        const uhlm_prompt *p = &ps->items[i];
        int np = uhlm_eval_prompt_tokens(slm, o->chat, p->text, ids, n_ctx + 1, err);
        if (np < 0) return eval_error_wrap(err, "prompt %s", p->id);
        if (np >= n_ctx)
            return uhlm_set_error(err, "prompt %s is %d tokens, the context holds %d", p->id, np,
                                  n_ctx);
        col->id = p->id;
        col->is_train = uhlm_prompt_is_train(p->id, o->split);
        out->n_train_prompts += col->is_train;
        out->n_test_prompts += !col->is_train;
        if (uhlm_device_start(dev, ids, np, uhlm_eval_prompt_seed(o->seed, p->id), err) != 0 ||
            uhlm_device_run(dev, err) < 0)
            return eval_error_wrap(err, "prompt %s", p->id);
        if (out->train.oom || out->test.oom || (col->csv && col->csv->oom))
            return uhlm_set_error(err, "out of memory");
        if (pg) uhlm_progress_step(pg, 1);
    }
    return 0;
}

int uhlm_calib_collect(uhlm_model *slm, uhlm_model *llm, const uhlm_prompt_set *ps,
                       const uhlm_calib_collect_opts *o, uhlm_progress *progress,
                       uhlm_calib_collection *out, uhlm_error *err) {
    memset(out, 0, sizeof *out);
    uhlm_device_params dp = o->dp;
    dp.policy.mode = UHLM_MODE_HLM;
    dp.record_u = 1;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = o->n_threads;
    cp.simd = o->simd;
    uhlm_ctx *slm_ctx = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_device *dev = NULL;
    int *ids = NULL, rc = -1;
    ebuf csv = {0};
    collector col = {out, o->want_csv ? &csv : NULL, NULL, 0};
    if (!(slm_ctx = uhlm_ctx_new(slm, &cp, err)) ||
        !(ver = uhlm_verifier_inproc_new(llm, &cp, err)) ||
        !(dev = uhlm_device_new(slm_ctx, 0, ver, NULL, &dp, err)))
        goto done;
    if (!(ids = malloc(sizeof(int) * ((size_t)uhlm_device_n_ctx(dev) + 1)))) {
        uhlm_set_error(err, "out of memory");
        goto done;
    }
    if (o->want_csv)
        eb_printf(&csv, "prompt_id,split,index,pos,draft,token,u,beta,x_d,y_d,accepted,outright\n");
    uhlm_device_set_callback(dev, on_token, &col);
    if (collect_prompts(dev, slm, ps, o, &col, ids, progress, err) != 0) goto done;
    if (progress) uhlm_progress_end(progress);
    if (o->want_csv) {
        out->csv = csv.s ? csv.s : calloc(1, 1);
        out->csv_len = csv.len;
        csv = (ebuf){0};
        if (!out->csv) {
            uhlm_set_error(err, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) uhlm_calib_collection_free(out);
    eb_free(&csv);
    free(ids);
    uhlm_device_free(dev);
    uhlm_verifier_free(ver);
    uhlm_ctx_free(slm_ctx);
    return rc;
}
