/* test_hybrid_device.c: the device loop on the real model pair. Greedy hlm == llm token for
 * token on 20 prompts; the u_th extremes; catch-up keeps the LLM conditioned on exactly the
 * device's context; determinism across thread counts; the shadow; the accounting; context
 * limits; vocabulary mismatch and an unavailable verifier (through fake verifiers). */
#include "check.h"
#include "hybrid/verifier_internal.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

/* the first held-out prompts of ../shared/data/tinystories-heldout-prompts.jsonl */
static const char *const prompts[20] = {
    "Once upon a time, there was a boy named Timmy.",
    "Once upon a time, there was a hungry little girl.",
    "Once upon a time there were two brothers, one was called Bob and the other was called Mike.",
    "One day, a little girl named Lily went to the gym with her mom.",
    "Once upon a time, there lived a little boy.",
    "Tom and Sam are brothers.",
    "Lily and mom went to the mall.",
    "Once upon a time, there was an enthusiastic boy named Jack.",
    "Once upon a time there was a little girl called Emma.",
    "Once there was a bear.",
    "The bush was now even more brilliant than ever!",
    "Molly and brad were in love.",
    "Once upon a time, there was a little girl named Lily.",
    "Once upon a time, there was a little bunny named Benny.",
    "Once upon a time, there was a harbor.",
    "Once upon a time, there was a little boy who lived in a village.",
    "Once there was a chubby little girl named Jane.",
    "Once upon a time, there was a family with a mom, a dad, a big sister, and a little brother.",
    "Teddy and his mom were walking through town.",
    "Suddenly, she heard a voice behind her.",
};

typedef struct {
    uhlm_model *slm, *llm;
    uhlm_ctx *slm_ctx, *shadow;
    uhlm_verifier *ver;
} env;

static int tokenize(const env *e, const char *text, int *ids, int cap) {
    uhlm_error err;
    return uhlm_tokenize(uhlm_model_tokenizer(e->slm), text, strlen(text), 1, 0, ids, cap, &err);
}

typedef struct {
    int out[512];
    int n;
    uhlm_device_stats st;
} result;

static int run(env *e, const uhlm_device_params *p, const char *prompt, uint64_t seed,
               int use_shadow, result *r) {
    uhlm_error err;
    int ids[256];
    int np = tokenize(e, prompt, ids, 256);
    uhlm_device *d = uhlm_device_new(e->slm_ctx, 0, e->ver, use_shadow ? e->shadow : NULL, p, &err);
    if (!d || uhlm_device_start(d, ids, np, seed, &err) != 0 || uhlm_device_run(d, &err) < 0) {
        fprintf(stderr, "run: %s\n", err.msg);
        uhlm_device_free(d);
        return -1;
    }
    int n;
    const int *t = uhlm_device_tokens(d, &n);
    r->n = n - np;
    memcpy(r->out, t + np, sizeof(int) * (size_t)r->n);
    r->st = *uhlm_device_get_stats(d);
    uhlm_device_free(d);
    return 0;
}

static int same(const result *a, const result *b) {
    return a->n == b->n && memcmp(a->out, b->out, sizeof(int) * (size_t)a->n) == 0;
}

static void test_greedy(env *e) {
    uhlm_device_params p = uhlm_device_default_params();
    p.sampling.temp = 0.0f;
    p.n_gen = 48;
    int equal = 0, rejections = 0, tokens = 0;
    for (int i = 0; i < 20; i++) {
        result h, l;
        p.policy.mode = UHLM_MODE_HLM;
        CHECK(run(e, &p, prompts[i], 1, 0, &h) == 0);
        p.policy.mode = UHLM_MODE_LLM;
        CHECK(run(e, &p, prompts[i], 1, 0, &l) == 0);
        equal += same(&h, &l);
        rejections += h.st.rejected;
        tokens += h.n;
        CHECK(h.st.transmitted == h.n);
        /* greedy sends no x: the prompt once, then one draft id per token */
        CHECK(h.st.uplink_bits == (uint64_t)(h.st.prompt_tokens + h.st.transmitted) * 9);
    }
    printf("greedy: hlm == llm on %d/20 prompts (%d tokens, %d drafts corrected)\n", equal, tokens,
           rejections);
    CHECK(equal == 20);
    CHECK(rejections > 0); /* the SLM alone would have diverged: verification did the work */
}

/* Every verified token was decided with the LLM's cache holding exactly the device context. */
typedef struct {
    env *e;
    uhlm_device *d;
    int verified, bad, skipped_since, catchup_seen;
} catchup_check;

static void on_token(void *user, const uhlm_token_event *ev) {
    catchup_check *c = user;
    if (!ev->verified) {
        c->skipped_since++;
        return;
    }
    c->verified++;
    int n;
    const int *dev = uhlm_device_tokens(c->d, &n);
    uhlm_ctx *ctx = uhlm_verifier_inproc_ctx(c->e->ver);
    /* the cache holds positions [0, pos): the context the verdict for pos was drawn from */
    if (uhlm_seq_len(ctx, 0) != ev->pos ||
        memcmp(uhlm_seq_tokens(ctx, 0), dev, sizeof(int) * (size_t)ev->pos) != 0)
        c->bad++;
    if (ev->n_catchup != c->skipped_since) c->bad++;
    c->catchup_seen += ev->n_catchup;
    c->skipped_since = 0;
}

static void test_catchup(env *e) {
    uhlm_device_params p = uhlm_device_default_params();
    p.policy.mode = UHLM_MODE_UHLM;
    p.policy.u_th = 0.5;
    p.n_gen = 120;
    uhlm_error err;
    int total_skipped = 0, total_verified = 0;
    for (int i = 0; i < 4; i++) {
        int ids[256];
        int np = tokenize(e, prompts[i], ids, 256);
        uhlm_device *d = uhlm_device_new(e->slm_ctx, 0, e->ver, NULL, &p, &err);
        CHECK(d != NULL);
        if (!d) return;
        catchup_check c = {e, d, 0, 0, 0, 0};
        uhlm_device_set_callback(d, on_token, &c);
        CHECK(uhlm_device_start(d, ids, np, 100 + i, &err) == 0);
        CHECK(uhlm_device_run(d, &err) > 0);
        const uhlm_device_stats *s = uhlm_device_get_stats(d);
        CHECK(c.bad == 0);
        CHECK(c.verified == s->transmitted);
        CHECK(c.catchup_seen == s->catchup_tokens);
        /* at the end: committed == the device sequence minus the unsent tail */
        int n, nc;
        const int *dev = uhlm_device_tokens(d, &n);
        const int *com = uhlm_verifier_inproc_committed(e->ver, &nc);
        int sent = uhlm_device_n_sent(d);
        CHECK(sent == nc);
        CHECK(n - sent == c.skipped_since);
        CHECK(memcmp(dev, com, sizeof(int) * (size_t)nc) == 0);
        uhlm_ctx *ctx = uhlm_verifier_inproc_ctx(e->ver);
        CHECK(uhlm_seq_len(ctx, 0) == nc - 1);
        CHECK(memcmp(uhlm_seq_tokens(ctx, 0), dev, sizeof(int) * (size_t)(nc - 1)) == 0);
        CHECK(s->generated == s->transmitted + s->skipped);
        total_skipped += s->skipped;
        total_verified += s->transmitted;
        uhlm_device_free(d);
    }
    printf("catch-up: %d verified, %d skipped; cache matched the device context at every "
           "verification\n",
           total_verified, total_skipped);
    CHECK(total_skipped > 20 && total_verified > 20); /* a real mix */
}

static void test_extremes(env *e) {
    uhlm_device_params p = uhlm_device_default_params();
    p.n_gen = 60;
    for (int i = 0; i < 3; i++) {
        result h, s, lo, hi;
        uint64_t seed = 7 + i;
        p.policy.mode = UHLM_MODE_HLM;
        CHECK(run(e, &p, prompts[i], seed, 0, &h) == 0);
        p.policy.mode = UHLM_MODE_SLM;
        CHECK(run(e, &p, prompts[i], seed, 0, &s) == 0);
        p.policy.mode = UHLM_MODE_UHLM;
        p.policy.u_th = -0.5;
        CHECK(run(e, &p, prompts[i], seed, 0, &lo) == 0);
        p.policy.u_th = 1.0;
        CHECK(run(e, &p, prompts[i], seed, 0, &hi) == 0);
        CHECK(lo.st.transmitted == lo.st.generated && lo.st.generated > 0);
        CHECK(same(&lo, &h));
        CHECK(hi.st.transmitted == 0 && hi.st.llm_forward_calls == 0 && hi.st.uplink_bits == 0);
        CHECK(same(&hi, &s));
        CHECK(s.st.transmitted == 0 && s.st.up_s == 0.0);
        CHECK(!same(&h, &s)); /* verification changed the text */
    }
}

static void test_accounting(env *e) {
    uhlm_device_params p = uhlm_device_default_params();
    p.n_gen = 40;
    result r;
    /* hlm f32: uplink = prompt ids + per token (32·V + draft id); downlink = id + flag */
    p.policy.mode = UHLM_MODE_HLM;
    CHECK(run(e, &p, prompts[5], 3, 0, &r) == 0);
    uint64_t np = (uint64_t)r.st.prompt_tokens, t = (uint64_t)r.st.transmitted;
    CHECK(r.st.uplink_bits == np * 9 + t * (32 * 512 + 9));
    CHECK(r.st.downlink_bits == t * 10);
    CHECK(r.st.uplink_msgs == 1 + t && r.st.downlink_msgs == t);
    /* one forward per verification, plus the prompt's unless the verifier's cache had it */
    CHECK(r.st.llm_forward_calls >= r.st.transmitted &&
          r.st.llm_forward_calls <= 1 + r.st.transmitted);
    CHECK(r.st.accepted + r.st.rejected == r.st.transmitted);
    double link = (np * 9 + t * (32 * 512 + 9) + t * 10) / uhlm_link_rate(1e6, 10.0);
    CHECKF(fabs(r.st.up_s + r.st.down_s - link) < 1e-9, "link %g vs %g", r.st.up_s + r.st.down_s,
           link);
    CHECK(fabs(uhlm_stats_accounted_s(&r.st) -
               (r.st.slm_s + r.st.unc_s + r.st.llm_s + r.st.up_s + r.st.down_s)) < 1e-12);
    CHECK(r.st.unc_s == 0.0 && r.st.n_u == 0); /* hlm does not read u */
    /* uhlm topk: payload K·(9 + 8) bits, catch-up ids cost 9 bits each */
    p.policy.mode = UHLM_MODE_UHLM;
    p.policy.u_th = 0.5;
    uhlm_payload_parse("topk:16", &p.payload, NULL);
    CHECK(run(e, &p, prompts[5], 3, 0, &r) == 0);
    np = (uint64_t)r.st.prompt_tokens;
    t = (uint64_t)r.st.transmitted;
    if (t > 0)
        CHECK(r.st.uplink_bits == np * 9 + t * (16 * 17 + 9) + (uint64_t)r.st.catchup_tokens * 9);
    CHECK(r.st.n_u == r.st.generated && r.st.unc_s > 0.0);
    /* llm mode: every token comes down, 9 bits each */
    p.policy.mode = UHLM_MODE_LLM;
    CHECK(run(e, &p, prompts[5], 3, 0, &r) == 0);
    CHECK(r.st.transmitted == r.st.generated && r.st.downlink_bits == 9 * (uint64_t)r.n);
    CHECK(r.st.llm_forward_calls >= r.n && r.st.llm_forward_calls <= 1 + r.n);
    CHECK(r.st.slm_s == 0.0);
    /* rand: the skip share follows p */
    p.policy.mode = UHLM_MODE_RAND;
    p.policy.skip_prob = 0.3;
    p.n_gen = 200;
    int sk = 0, gen = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(run(e, &p, prompts[10 + i], 50 + i, 0, &r) == 0);
        sk += r.st.skipped;
        gen += r.st.generated;
    }
    CHECKF(fabs((double)sk / gen - 0.3) < 5 * sqrt(0.21 / gen), "rand skip share %g",
           (double)sk / gen);
}

static void test_shadow_and_determinism(env *e) {
    uhlm_device_params p = uhlm_device_default_params();
    p.policy.mode = UHLM_MODE_UHLM;
    p.policy.u_th = 0.4;
    p.n_gen = 80;
    result a, b;
    CHECK(run(e, &p, prompts[2], 11, 0, &a) == 0);
    CHECK(run(e, &p, prompts[2], 11, 1, &b) == 0);
    CHECK(same(&a, &b)); /* the shadow only watches */
    CHECK(b.st.shadow_evaluated == b.st.skipped && a.st.shadow_evaluated == 0);
    CHECK(b.st.shadow_true_skips <= b.st.shadow_evaluated);
    printf("shadow: %d skipped, TSR %.3f, would-be rejection %.3f\n", b.st.skipped,
           uhlm_stats_tsr(&b.st),
           b.st.shadow_evaluated ? b.st.shadow_beta_sum / b.st.skipped : 0.0);
    /* same seed, same text; another seed, another text */
    CHECK(run(e, &p, prompts[2], 11, 0, &b) == 0);
    CHECK(same(&a, &b));
    CHECK(run(e, &p, prompts[2], 12, 0, &b) == 0);
    CHECK(!same(&a, &b));
    /* thread count does not matter */
    uhlm_error err;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 2;
    env e2 = *e;
    e2.slm_ctx = uhlm_ctx_new(e->slm, &cp, &err);
    e2.ver = uhlm_verifier_inproc_new(e->llm, &cp, &err);
    CHECK(e2.slm_ctx && e2.ver);
    if (e2.slm_ctx && e2.ver) {
        const uhlm_mode modes[5] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM, UHLM_MODE_RAND,
                                    UHLM_MODE_UHLM};
        for (int m = 0; m < 5; m++) {
            p.policy.mode = modes[m];
            CHECK(run(e, &p, prompts[3], 5, 0, &a) == 0);
            CHECK(run(&e2, &p, prompts[3], 5, 0, &b) == 0);
            CHECKF(same(&a, &b), "mode %s differs across thread counts", uhlm_mode_name(modes[m]));
        }
    }
    uhlm_verifier_free(e2.ver);
    uhlm_ctx_free(e2.slm_ctx);
}

static void test_limits(env *e) {
    uhlm_error err;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    cp.n_ctx = 40;
    uhlm_ctx *small = uhlm_ctx_new(e->slm, &cp, &err);
    cp.n_ctx = 32;
    uhlm_verifier *vs = uhlm_verifier_inproc_new(e->llm, &cp, &err);
    CHECK(small && vs);
    if (!small || !vs) return;
    uhlm_device_params p = uhlm_device_default_params();
    p.policy.mode = UHLM_MODE_UHLM;
    p.n_gen = 1000;
    uhlm_device *d = uhlm_device_new(small, 0, vs, NULL, &p, &err);
    CHECK(d && uhlm_device_n_ctx(d) == 32);
    int ids[256];
    int np = tokenize(e, prompts[0], ids, 256);
    CHECK(uhlm_device_start(d, ids, np, 1, &err) == 0);
    int got = uhlm_device_run(d, &err);
    int n;
    uhlm_device_tokens(d, &n);
    const uhlm_device_stats *s = uhlm_device_get_stats(d);
    CHECKF((n == 32 && !strcmp(s->stop, "context")) || !strcmp(s->stop, "eos"), "n %d stop %s", n,
           s->stop);
    CHECK(got == n - np);
    /* a prompt longer than the context, and bad token ids, are refused */
    int longp[40];
    for (int i = 0; i < 40; i++) longp[i] = 1 + i;
    CHECK(uhlm_device_start(d, longp, 40, 1, &err) != 0 && strstr(err.msg, "context"));
    ids[1] = 512;
    CHECK(uhlm_device_start(d, ids, np, 1, &err) != 0);
    ids[1] = -1;
    CHECK(uhlm_device_start(d, ids, np, 1, &err) != 0);
    int tok;
    CHECK(uhlm_device_step(d, &tok, &err) == -1); /* no started generation */
    uhlm_device_free(d);
    /* n_gen 0 stops at once */
    p.n_gen = 0;
    d = uhlm_device_new(small, 0, vs, NULL, &p, &err);
    CHECK(d && uhlm_device_start(d, ids, 3, 1, &err) != 0); /* ids[1] still bad */
    ids[1] = 5;
    CHECK(uhlm_device_start(d, ids, 3, 1, &err) == 0 && uhlm_device_step(d, &tok, &err) == 0);
    CHECK(!strcmp(uhlm_device_get_stats(d)->stop, "length"));
    uhlm_device_free(d);
    /* the modes' requirements */
    CHECK(uhlm_device_new(NULL, 0, vs, NULL, &p, &err) == NULL); /* uhlm needs an SLM */
    p.policy.mode = UHLM_MODE_HLM;
    CHECK(uhlm_device_new(small, 0, NULL, NULL, &p, &err) == NULL); /* hlm needs a verifier */
    p.policy.mode = UHLM_MODE_SLM;
    d = uhlm_device_new(small, 0, NULL, NULL, &p, &err);
    CHECK(d != NULL);
    uhlm_device_free(d);
    uhlm_verifier_free(vs);
    uhlm_ctx_free(small);
}

/* ---- fake verifiers: a wrong vocabulary, and one that is never reachable ---- */
typedef struct {
    int n_vocab;
    uint64_t fp;
    int opens, verifies;
} fake;

static int f_info(uhlm_verifier *v, uhlm_verifier_info *o, uhlm_error *err) {
    (void)err;
    fake *f = v->impl;
    memset(o, 0, sizeof *o);
    o->n_vocab = f->n_vocab;
    o->fingerprint = f->fp;
    o->n_ctx = 4096;
    snprintf(o->model, sizeof o->model, "fake");
    return 0;
}
static int f_open(uhlm_verifier *v, const int *p, int n, const uhlm_sampling *s, uint64_t seed,
                  uhlm_opened *o, uhlm_error *err) {
    (void)p, (void)n, (void)s, (void)seed, (void)o, (void)err;
    ((fake *)v->impl)->opens++;
    return UHLM_VERIFIER_UNAVAILABLE;
}
static int f_verify(uhlm_verifier *v, const uhlm_verify_req *r, uhlm_verdict *o, uhlm_error *err) {
    (void)r, (void)o, (void)err;
    ((fake *)v->impl)->verifies++;
    return UHLM_VERIFIER_UNAVAILABLE;
}
static int f_generate(uhlm_verifier *v, const uhlm_generate_req *r, int *t, uhlm_generated *o,
                      uhlm_error *err) {
    (void)v, (void)r, (void)t, (void)o;
    return uhlm_set_error(err, "fake");
}
static void f_close(uhlm_verifier *v) { (void)v; }
static void f_destroy(uhlm_verifier *v) { (void)v; }
static const uhlm_verifier_ops fake_ops = {f_info,     f_open,  f_verify,
                                           f_generate, f_close, f_destroy};

static void test_fakes(env *e) {
    uhlm_error err;
    uhlm_device_params p = uhlm_device_default_params();
    p.policy.mode = UHLM_MODE_HLM;
    fake f = {32000, 0, 0, 0};
    uhlm_verifier v = {&fake_ops, &f};
    CHECK(uhlm_device_new(e->slm_ctx, 0, &v, NULL, &p, &err) == NULL);
    CHECK(strstr(err.msg, "vocabulary mismatch") != NULL);
    f.n_vocab = 512;
    f.fp = uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(e->slm)) ^ 1;
    CHECK(uhlm_device_new(e->slm_ctx, 0, &v, NULL, &p, &err) == NULL);
    CHECK(strstr(err.msg, "vocabulary mismatch") != NULL);
    /* unreachable verifier: the device carries on alone, tokens marked unverified; the text
     * is what slm mode gives with the same seed */
    f.fp = 0;
    p.n_gen = 30;
    result alone, s;
    uhlm_device *d = uhlm_device_new(e->slm_ctx, 0, &v, NULL, &p, &err);
    CHECK(d != NULL);
    if (!d) return;
    int ids[256];
    int np = tokenize(e, prompts[4], ids, 256);
    CHECK(uhlm_device_start(d, ids, np, 9, &err) == 0);
    CHECK(uhlm_device_run(d, &err) > 0);
    const uhlm_device_stats *st = uhlm_device_get_stats(d);
    int n;
    const int *t = uhlm_device_tokens(d, &n);
    alone.n = n - np;
    memcpy(alone.out, t + np, sizeof(int) * (size_t)alone.n);
    CHECK(st->unverified == st->generated && st->transmitted == 0 && f.opens == st->generated);
    CHECK(uhlm_device_n_sent(d) == 0);
    uhlm_device_free(d);
    p.policy.mode = UHLM_MODE_SLM;
    CHECK(run(e, &p, prompts[4], 9, 0, &s) == 0);
    CHECK(same(&alone, &s));
}

int main(void) {
    env e;
    uhlm_error err;
    e.slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                            uhlm_test_model_path("tok512.bin"), &err);
    e.llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                            uhlm_test_model_path("tok512.bin"), &err);
    CHECK(e.slm && e.llm);
    if (!e.slm || !e.llm) return check_report();
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    e.slm_ctx = uhlm_ctx_new(e.slm, &cp, &err);
    e.shadow = uhlm_ctx_new(e.llm, &cp, &err);
    e.ver = uhlm_verifier_inproc_new(e.llm, &cp, &err);
    CHECK(e.slm_ctx && e.shadow && e.ver);
    if (e.slm_ctx && e.shadow && e.ver) {
        double t0 = uhlm_now();
        test_greedy(&e);
        test_catchup(&e);
        test_extremes(&e);
        test_accounting(&e);
        test_shadow_and_determinism(&e);
        test_limits(&e);
        test_fakes(&e);
        printf("device tests took %.1f s\n", uhlm_now() - t0);
    }
    uhlm_verifier_free(e.ver);
    uhlm_ctx_free(e.shadow);
    uhlm_ctx_free(e.slm_ctx);
    uhlm_model_free(e.slm);
    uhlm_model_free(e.llm);
    return check_report();
}
