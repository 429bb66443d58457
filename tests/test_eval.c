/* test_eval.c: the evaluation library. The prompt loader on JSONL, Alpaca JSON and malformed
 * input; the least-squares fit recovering an exact line, thresholds and risk on synthetic
 * data; link re-accounting equal to real runs at other SNRs (with and without fading and
 * latency) on the real pair; embeddings and NLL sanity. */
#include "check.h"
#include "uhlm/calib.h"
#include "uhlm/eval.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/prompts.h"
#include "uhlm/tokenizer.h"

static int parse(const char *text, uhlm_prompt_set *s, uhlm_error *err) {
    return uhlm_prompts_parse(text, strlen(text), "t.jsonl", s, err);
}

static void test_prompts(void) {
    uhlm_prompt_set s;
    uhlm_error err = {{0}};
    CHECK(parse("{\"id\":\"a\",\"prompt\":\"Hello\"}\n\n{\"id\":\"b\",\"prompt\":\"World \\\"x\\\"\"}\n", &s, &err) == 0);
    CHECK(s.n == 2 && !strcmp(s.items[1].id, "b") && !strcmp(s.items[1].text, "World \"x\""));
    uhlm_prompts_free(&s);
    /* no id: named by line */
    CHECK(parse("{\"prompt\":\"p\"}", &s, &err) == 0 && s.n == 1 && !strcmp(s.items[0].id, "line-1"));
    uhlm_prompts_free(&s);
    /* Alpaca: instruction, then the input after a blank line; output ignored */
    CHECK(parse("[{\"instruction\":\"Sum\",\"input\":\"1 2\",\"output\":\"3\"},"
                "{\"instruction\":\"Hi\",\"input\":\"\",\"output\":\"x\"}]", &s, &err) == 0);
    CHECK(s.n == 2 && !strcmp(s.items[0].text, "Sum\n\n1 2") && !strcmp(s.items[1].text, "Hi") &&
          !strcmp(s.items[1].id, "item-1"));
    uhlm_prompts_free(&s);
    /* malformed input: an error naming the place, and an empty set */
    const char *bad[][2] = {
        {"{\"id\":\"a\",\"prompt\":\"x\"}\n{oops\n", "line 2"},
        {"{\"id\":\"a\"}\n", "no \"prompt\""},
        {"{\"id\":\"a\",\"prompt\":\"\"}\n", "empty prompt"},
        {"{\"id\":\"a\",\"prompt\":3}\n", "must be a string"},
        {"{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"a\",\"prompt\":\"y\"}\n", "duplicate id"},
        {"hello\n", "not a prompt file"},
        {"   \n", "empty"},
        {"[1, 2]", "element 0"},
        {"[{\"instruction\": 5}]", "instruction"},
        {"[{\"id\":\"a\",\"prompt\":\"x\"}", "invalid JSON"},
        {"[]", "no prompts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&err, 0, sizeof err);
        int rc = parse(bad[i][0], &s, &err);
        CHECKF(rc != 0 && s.n == 0 && s.items == NULL && strstr(err.msg, bad[i][1]) &&
                   strstr(err.msg, "t.jsonl"),
               "case %zu: rc %d msg '%s'", i, rc, err.msg);
    }
    CHECK(uhlm_prompts_load("/nonexistent/p.jsonl", &s, &err) != 0 && strstr(err.msg, "/nonexistent"));
    /* the real sets load, and a split partitions by id */
    char path[1024];
    const char *src = getenv("UHLM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/data/prompts/stories.jsonl", src ? src : ".");
    CHECKF(uhlm_prompts_load(path, &s, &err) == 0 && s.n >= 100, "%s", err.msg);
    uhlm_prompt_set tr, te;
    CHECK(uhlm_prompts_split(&s, 0.5, 1, &tr, &err) == 0 && uhlm_prompts_split(&s, 0.5, 0, &te, &err) == 0);
    CHECK(tr.n + te.n == s.n && tr.n > s.n / 4 && te.n > s.n / 4);
    for (int i = 0; i < tr.n; i++) CHECK(uhlm_prompt_is_train(tr.items[i].id, 0.5));
    uhlm_prompts_free(&tr);
    uhlm_prompts_free(&te);
    uhlm_prompts_free(&s);
}

static void test_fit(void) {
    enum { N = 1000 };
    uhlm_calib_sample s[N];
    for (int i = 0; i < N; i++) {
        double u = (double)i / (N - 1);
        s[i] = (uhlm_calib_sample){u, 0.82 * u - 0.06, i % 3 != 0, u < 0.05};
    }
    uhlm_linfit f;
    uhlm_error err = {{0}};
    CHECK(uhlm_calib_fit(s, N, &f, &err) == 0);
    CHECKF(fabs(f.a - 0.82) < 1e-12 && fabs(f.b + 0.06) < 1e-12 && fabs(f.r2 - 1) < 1e-12,
           "a %.15g b %.15g r2 %.15g", f.a, f.b, f.r2);
    double av, pr;
    CHECK(uhlm_calib_thresholds(&f, 0.3, &av, &pr, &err) == 0);
    CHECK(fabs(av - 0.06 / 0.82) < 1e-12 && fabs(pr - 0.36 / 0.82) < 1e-12);
    /* risk: the predicted risk is the mean of (a u + b)+ over u <= u_th, as a share of all tokens */
    uhlm_calib_risk r;
    uhlm_calib_risk_eval(s, N, &f, 0.5, &r);
    double want = 0, rej = 0;
    size_t k = 0;
    for (int i = 0; i < N; i++)
        if (s[i].u <= 0.5) {
            k++;
            want += s[i].beta > 0 ? s[i].beta : 0;
            rej += !s[i].accepted;
        }
    CHECK(r.n_skip == k && fabs(r.predicted - want / N) < 1e-12 && fabs(r.observed_reject - rej / N) < 1e-12);
    CHECK(r.predicted <= r.predicted_loose + 1e-12);
    /* bins cover every sample */
    uhlm_calib_bin b[10];
    uhlm_calib_bins(s, N, 10, b);
    size_t tot = 0;
    for (int i = 0; i < 10; i++) tot += b[i].count;
    CHECK(tot == N && fabs(b[0].mean_u - 0.0495) < 1e-3);
    CHECK(fabs(uhlm_calib_delta(s, N) - (double)(N - 74) / N) < 0.01);
    /* degenerate input is refused with a reason */
    CHECK(uhlm_calib_fit(s, 1, &f, &err) != 0 && strstr(err.msg, "at least 2"));
    for (int i = 0; i < N; i++) s[i].u = 0.5;
    CHECK(uhlm_calib_fit(s, N, &f, &err) != 0 && strstr(err.msg, "equal"));
    uhlm_linfit flat = {-0.1, 0.2, 0.5, 10};
    CHECK(uhlm_calib_thresholds(&flat, 0.3, &av, &pr, &err) != 0 && strstr(err.msg, "not positive"));
    /* thresholds from a file */
    char path[1024];
    snprintf(path, sizeof path, "%s/uhlm_calib_test_%d.json", uhlm_test_tmpdir(), (int)getpid());
    const char *js = "{\"thresholds\":{\"risk_averse\":0.07,\"risk_prone\":0.43}}";
    CHECK(uhlm_write_file_atomic(path, js, strlen(js), &err) == 0);
    double u = 0;
    CHECK(uhlm_calib_load_threshold(path, "averse", &u, &err) == 0 && u == 0.07);
    CHECK(uhlm_calib_load_threshold(path, "prone", &u, &err) == 0 && u == 0.43);
    CHECK(uhlm_calib_load_threshold(path, "bold", &u, &err) != 0);
    CHECK(uhlm_write_file_atomic(path, "{}", 2, &err) == 0);
    CHECK(uhlm_calib_load_threshold(path, "averse", &u, &err) != 0 && strstr(err.msg, "risk_averse"));
    remove(path);
    CHECK(uhlm_calib_load_threshold(path, "averse", &u, &err) != 0 && strstr(err.msg, "cannot open"));
}

typedef struct {
    uhlm_msglog log;
} cbst;
static void cb(void *user, const uhlm_token_event *ev) {
    cbst *c = user;
    CHECK(uhlm_msglog_event(&c->log, ev) == 0);
}

static void test_reaccount(void) {
    uhlm_error err = {{0}};
    uhlm_model *slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                                      uhlm_test_model_path("tok512.bin"), &err);
    uhlm_model *llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                                      uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(slm && llm, "%s", err.msg);
    if (!slm || !llm) return;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = 1;
    uhlm_ctx *sc = uhlm_ctx_new(slm, &cp, &err);
    uhlm_verifier *v = uhlm_verifier_inproc_new(llm, &cp, &err);
    uhlm_ctx *q = uhlm_ctx_new(llm, &cp, &err);
    int ids[64];
    const char *p = "Once upon a time, there was a little dog named Max.";
    int np = uhlm_tokenize(uhlm_model_tokenizer(slm), p, strlen(p), 1, 0, ids, 64, &err);
    uhlm_mode modes[4] = {UHLM_MODE_HLM, UHLM_MODE_UHLM, UHLM_MODE_RAND, UHLM_MODE_LLM};
    int checked = 0;
    for (int fad = 0; fad < 2; fad++)
        for (int mi = 0; mi < 4; mi++) {
            uhlm_device_params dp = uhlm_device_default_params();
            dp.policy.mode = modes[mi];
            dp.policy.u_th = 0.3;
            dp.n_gen = 40;
            dp.channel.fading = fad ? UHLM_FADING_RAYLEIGH : UHLM_FADING_NONE;
            dp.channel.up.latency_s = dp.channel.down.latency_s = fad ? 0.001 : 0.0;
            dp.channel.down.bandwidth_hz = 2e5;
            cbst st = {{0}};
            uhlm_msglog_reset(&st.log, (uint64_t)np * uhlm_token_bits(512));
            uhlm_device *d = uhlm_device_new(modes[mi] == UHLM_MODE_LLM ? NULL : sc, 0, v, NULL, &dp, &err);
            CHECKF(d != NULL, "%s", err.msg);
            if (!d) continue;
            uhlm_device_set_callback(d, cb, &st);
            CHECK(uhlm_device_start(d, ids, np, 7, &err) == 0 && uhlm_device_run(d, &err) > 0);
            uhlm_device_free(d);
            double snrs[3] = {-10, 3, 30};
            for (int k = 0; k < 3; k++) {
                uhlm_device_params d2 = dp;
                d2.channel.up.snr_db = d2.channel.down.snr_db = snrs[k];
                uhlm_device *r = uhlm_device_new(modes[mi] == UHLM_MODE_LLM ? NULL : sc, 0, v, NULL, &d2, &err);
                CHECK(r && uhlm_device_start(r, ids, np, 7, &err) == 0 && uhlm_device_run(r, &err) > 0);
                if (!r) continue;
                const uhlm_device_stats *s = uhlm_device_get_stats(r);
                double up, down;
                uhlm_msglog_replay(&st.log, &d2.channel, 7, &up, &down);
                CHECKF(fabs(up - s->up_s) <= 1e-12 * s->up_s && fabs(down - s->down_s) <= 1e-12 * s->down_s,
                       "mode %s fading %d snr %g: replay up %.17g down %.17g, real up %.17g down %.17g",
                       uhlm_mode_name(modes[mi]), fad, snrs[k], up, down, s->up_s, s->down_s);
                CHECK(st.log.n == s->uplink_msgs + s->downlink_msgs);
                checked++;
                uhlm_device_free(r);
            }
            uhlm_msglog_free(&st.log);
        }
    CHECK(checked == 24);
    /* embeddings: a text is identical to itself, closer to a paraphrase than to noise */
    int a[64], b[64], c[64];
    const char *ta = "The dog ran in the park.", *tb = "The dog played in the park.", *tc = "zq xv kk";
    int na = uhlm_tokenize(uhlm_model_tokenizer(llm), ta, strlen(ta), 0, 0, a, 64, &err);
    int nb = uhlm_tokenize(uhlm_model_tokenizer(llm), tb, strlen(tb), 0, 0, b, 64, &err);
    int nc = uhlm_tokenize(uhlm_model_tokenizer(llm), tc, strlen(tc), 0, 0, c, 64, &err);
    int D = uhlm_model_config(llm)->dim;
    float *ea = malloc(sizeof(float) * D * 4), *eb = ea + D, *ec = eb + D, *e0 = ec + D;
    CHECK(uhlm_embed_tokens(q, a, na, ea, &err) == 0 && uhlm_embed_tokens(q, b, nb, eb, &err) == 0 &&
          uhlm_embed_tokens(q, c, nc, ec, &err) == 0 && uhlm_embed_tokens(q, a, na, e0, &err) == 0);
    CHECK(fabs(uhlm_cosine(ea, e0, D) - 1) < 1e-6);
    CHECK(uhlm_cosine(ea, eb, D) > uhlm_cosine(ea, ec, D));
    CHECK(uhlm_embed_tokens(q, a, 0, e0, &err) == 0);
    free(ea);
    /* NLL: finite, positive, and a fluent continuation beats noise */
    int s1[80], s2[80];
    const char *t1 = "Once upon a time, there was a little girl named Lily.";
    const char *t2 = "Once upon a time, zq xv kk qq zz bb girl Lily.";
    int n1 = uhlm_tokenize(uhlm_model_tokenizer(llm), t1, strlen(t1), 1, 0, s1, 80, &err);
    int n2 = uhlm_tokenize(uhlm_model_tokenizer(llm), t2, strlen(t2), 1, 0, s2, 80, &err);
    double l1, l2;
    CHECK(uhlm_sequence_nll(q, s1, n1, 5, &l1, &err) == 0 && uhlm_sequence_nll(q, s2, n2, 5, &l2, &err) == 0);
    CHECK(isfinite(l1) && l1 > 0 && l1 / (n1 - 5) < l2 / (n2 - 5));
    CHECK(uhlm_sequence_nll(q, s1, n1, 0, &l1, &err) != 0);
    uhlm_ctx_free(q);
    uhlm_verifier_free(v);
    uhlm_ctx_free(sc);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
}

int main(void) {
    test_prompts();
    test_fit();
    test_reaccount();
    return check_report();
}
