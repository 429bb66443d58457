/* test_harness.c: the evaluation harness as a library (harness.h, calib_samples.h) on the
 * TinyStories pair: the plan's sets and records, sums with and without resampling weights,
 * the independence of a prompt's results from the other prompts, the report files, the
 * option checks, and the calibration collection, analysis and calib.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "uhlm/calib_samples.h"
#include "uhlm/harness.h"
#include "uhlm/hybrid.h"
#include "uhlm/prompts.h"
#include "uhlm/tokenizer.h"

static const char prompts3[] =
    "{\"id\": \"a\", \"prompt\": \"Once upon a time, there was a little dog named Max.\"}\n"
    "{\"id\": \"b\", \"prompt\": \"Lily and mom went to the park.\"}\n"
    "{\"id\": \"c\", \"prompt\": \"Tom had a red ball.\"}\n";
/* the same prompts, another order and one fewer */
static const char prompts2[] =
    "{\"id\": \"c\", \"prompt\": \"Tom had a red ball.\"}\n"
    "{\"id\": \"a\", \"prompt\": \"Once upon a time, there was a little dog named Max.\"}\n";

static uhlm_eval_opts small_opts(void) {
    uhlm_eval_opts o = uhlm_eval_default_opts();
    o.hidden_cosine = 1; /* the checks below cover the cosine too */
    o.base.n_gen = 12;
    o.n_snr = 2;
    o.snr[0] = 0;
    o.snr[1] = 20;
    o.n_sweep = 1;
    o.sweep_q[0] = 0.5;
    o.sweep_snr = 10; /* off the grid: joins it as a third SNR */
    o.u_th = 0.3;
    o.prompts_path = "prompts3";
    return o;
}

static int file_size(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? (int)st.st_size : -1;
}

static void check_sets(const uhlm_eval_results *R, int NP) {
    static const uhlm_mode all[5] = {UHLM_MODE_SLM, UHLM_MODE_LLM, UHLM_MODE_HLM, UHLM_MODE_RAND,
                                     UHLM_MODE_UHLM};
    for (int k = 0; k < 5; k++) {
        uhlm_mode m = all[k];
        CHECKF(R->main[m].n == NP && R->greedy[m].n == NP, "mode %s", uhlm_mode_name(m));
        for (int i = 0; i < R->main[m].n; i++) {
            const uhlm_eval_record *r = &R->main[m].rec[i];
            CHECK(r->prompt == i && r->n_tokens == r->generated && r->generated > 0);
            /* link time falls as the SNR rises, and the sweep's SNR (10 dB) lies between */
            CHECK(r->link_s[0] >= r->link_s[2] && r->link_s[2] >= r->link_s[1]);
            if (m == UHLM_MODE_HLM) CHECK(r->transmitted == r->generated);
            if (m == UHLM_MODE_SLM) CHECK(r->transmitted == 0 && r->up_bits == 0);
            if (m != UHLM_MODE_LLM) CHECK(r->have_cos && r->nll_n == r->generated);
        }
        for (int i = 0; i < R->greedy[m].n; i++) CHECK(R->greedy[m].rec[i].have_exact);
    }
    CHECK(R->main[UHLM_MODE_LLM].rec[0].have_cos == 0); /* the reference is not scored */
    CHECK(R->llm_self.n == NP && R->llm_self.rec[0].have_cos);
    /* greedy hlm verifies every token: it is the greedy llm, token for token */
    for (int i = 0; i < NP; i++) CHECK(R->greedy[UHLM_MODE_HLM].rec[i].exact == 1);
    CHECK(R->n_sweep == 1 && R->sweep[0].u.n == NP && R->sweep[0].r.n == NP);
    CHECK(R->n_fits == 1 && R->fits[0].method == UHLM_UNC_PERTURB);
    CHECK(R->rand_prob >= 0 && R->rand_prob <= 1);
}

static void check_sums(const uhlm_eval_results *R) {
    const uhlm_eval_set *s = &R->main[UHLM_MODE_UHLM];
    uhlm_eval_acc a, w1, w;
    uhlm_eval_sum(s, 3, &a);
    long gen = 0, trans = 0;
    for (int i = 0; i < s->n; i++) {
        gen += s->rec[i].generated;
        trans += s->rec[i].transmitted;
    }
    CHECK(a.runs == s->n && a.gen == gen && a.trans == trans);
    CHECK(fabs(uhlm_eval_acc_tr(&a) - (double)trans / (double)gen) < 1e-15);
    int ones[3] = {1, 1, 1}, boot[3] = {2, 0, 1};
    uhlm_eval_sum_weighted(s, 3, ones, 0, &w1);
    CHECK(memcmp(&a, &w1, sizeof a) == 0); /* weights of one are the plain sum, bit for bit */
    uhlm_eval_sum_weighted(s, 3, boot, 0, &w);
    CHECK(w.runs == 3 && w.gen == 2L * s->rec[0].generated + s->rec[2].generated);
    CHECK(w.compute_s == s->rec[0].compute_s + s->rec[0].compute_s + s->rec[2].compute_s);
    CHECK(isnan(uhlm_eval_ratio(1, 0)) && isnan(uhlm_eval_acc_cos(&(uhlm_eval_acc){0})));
    CHECK(uhlm_eval_acc_tput(&a, 0) <= uhlm_eval_acc_tput(&a, 1));
    /* the expected acceptance 1 - beta is at least the outright share (beta = 0) */
    uhlm_eval_sum(&R->main[UHLM_MODE_SLM], 3, &a);
    CHECK(a.sh_eval > 0 && uhlm_eval_acc_tsr_expected(&a) >= uhlm_eval_acc_tsr(&a));
    CHECK(uhlm_eval_acc_tsr_expected(&a) <= 1.0);
}

/* A prompt's records do not depend on which other prompts run, nor in what order. */
static void check_order_free(uhlm_model *slm, uhlm_model *llm, const uhlm_eval_results *R) {
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    CHECK(uhlm_prompts_parse(prompts2, strlen(prompts2), "prompts2", &ps, &err) == 0);
    uhlm_eval_opts o = small_opts();
    uhlm_eval_harness *h = uhlm_eval_harness_new(slm, llm, NULL, &ps, &o, &err);
    CHECKF(h != NULL, "%s", err.msg);
    if (!h) return;
    uhlm_eval_set llm_ref, uh;
    uhlm_eval_cfg c = {UHLM_MODE_LLM, o.u_th, 0, UHLM_UNC_PERTURB, 0, 0, 1, 1};
    CHECK(uhlm_eval_run_set(h, &c, 0, "llm", NULL, NULL, &llm_ref, &err) == 0);
    c = (uhlm_eval_cfg){UHLM_MODE_UHLM, o.u_th, 0, UHLM_UNC_PERTURB, 0, 0, 1, 0};
    CHECK(uhlm_eval_run_set(h, &c, 0, "uhlm", NULL, NULL, &uh, &err) == 0);
    const int map[2] = {2, 0}; /* c, a in prompts3 */
    for (int i = 0; i < uh.n; i++) {
        const uhlm_eval_record *x = &uh.rec[i], *y = &R->main[UHLM_MODE_UHLM].rec[map[i]];
        CHECK(x->n_tokens == y->n_tokens &&
              !memcmp(x->tokens, y->tokens, sizeof(int) * (size_t)x->n_tokens));
        CHECK(x->transmitted == y->transmitted && x->link_s[0] == y->link_s[0]);
        CHECK(x->have_cos && x->cos == y->cos); /* against the same reference text */
    }
    /* a greedy set needs its reference first */
    uhlm_eval_set g;
    c.greedy = 1;
    CHECK(uhlm_eval_run_set(h, &c, 0, NULL, NULL, NULL, &g, &err) == -1);
    CHECK(strstr(err.msg, "greedy reference") != NULL);
    uhlm_eval_set_free(&g);
    uhlm_eval_set_free(&llm_ref);
    uhlm_eval_set_free(&uh);
    uhlm_eval_harness_free(h);
    uhlm_prompts_free(&ps);
}

/* Two seeds per prompt: repetition 0 is the single-seed run, repetition 1 another draw; the
 * bootstrap intervals are ordered and hlm's TR is exactly 1 in every resample. */
static void check_reps(uhlm_model *slm, uhlm_model *llm, const uhlm_eval_results *R1) {
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    CHECK(uhlm_prompts_parse(prompts3, strlen(prompts3), "prompts3", &ps, &err) == 0);
    uhlm_eval_opts o = small_opts();
    o.n_reps = 2;
    o.n_sweep = 0;
    o.greedy = 0;
    uhlm_eval_harness *h = uhlm_eval_harness_new(slm, llm, NULL, &ps, &o, &err);
    CHECKF(h != NULL, "%s", err.msg);
    if (!h) return;
    CHECK(uhlm_eval_total_runs(h) == 2 * 3 * 6);
    uhlm_eval_results R;
    CHECKF(uhlm_eval_run_all(h, NULL, &R, &err) == 0, "%s", err.msg);
    const uhlm_eval_set *u2 = &R.main[UHLM_MODE_UHLM], *u1 = &R1->main[UHLM_MODE_UHLM];
    CHECK(u2->n == 6);
    int differ = 0;
    for (int j = 0; j < u2->n; j++) {
        const uhlm_eval_record *x = &u2->rec[j];
        CHECK(x->prompt == j % 3 && x->rep == j / 3);
        if (x->rep == 0) {
            const uhlm_eval_record *y = &u1->rec[x->prompt];
            CHECK(x->seed == y->seed && x->n_tokens == y->n_tokens &&
                  !memcmp(x->tokens, y->tokens, sizeof(int) * (size_t)x->n_tokens) &&
                  x->cos == y->cos);
        } else {
            differ |= x->seed != u2->rec[j - 3].seed;
        }
    }
    CHECK(differ);
    uhlm_eval_intervals iv;
    CHECKF(uhlm_eval_bootstrap(h, &R, 200, 7, &iv, &err) == 0, "%s", err.msg);
    CHECK(iv.n > 0 && iv.n_boot == 200 && !iv.by_rep);
    int seen_tr = 0;
    for (int i = 0; i < iv.n; i++) {
        const uhlm_eval_interval *x = &iv.iv[i];
        CHECK(!(x->lo > x->hi));
        if (x->mode == UHLM_MODE_HLM && !strcmp(x->name, "tr")) {
            seen_tr = 1;
            CHECK(x->value == 1 && x->lo == 1 && x->hi == 1);
        }
    }
    CHECK(seen_tr);
    uhlm_eval_intervals_free(&iv);
    uhlm_eval_results_free(&R);
    uhlm_eval_harness_free(h);
    uhlm_prompts_free(&ps);
}

static void check_opts(void) {
    uhlm_error err = {{0}};
    uhlm_eval_opts o = small_opts();
    CHECK(uhlm_eval_opts_check(&o, &err) == 0);
    o.n_snr = UHLM_EVAL_MAX_SNR;
    for (int k = 0; k < o.n_snr; k++) o.snr[k] = k;
    o.sweep_snr = -1;
    CHECK(uhlm_eval_opts_check(&o, &err) == -1 && strstr(err.msg, "too many SNR"));
    o.sweep_snr = 3;
    CHECK(uhlm_eval_opts_check(&o, &err) == 0);
    o = small_opts();
    o.base.sampling.top_p = 2;
    CHECK(uhlm_eval_opts_check(&o, &err) == -1);
    o = small_opts();
    o.n_reps = 0;
    CHECK(uhlm_eval_opts_check(&o, &err) == -1 && strstr(err.msg, "repetitions"));
    CHECK(uhlm_eval_rep_mix(0) == 0 && uhlm_eval_rep_mix(1) != uhlm_eval_rep_mix(2));
    CHECK(uhlm_eval_prompt_seed(42, "a") != uhlm_eval_prompt_seed(42, "b"));
    CHECK(uhlm_eval_prompt_seed(42, "a") != uhlm_eval_prompt_seed(43, "a"));
}

static void test_eval_harness(uhlm_model *slm, uhlm_model *llm) {
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    CHECK(uhlm_prompts_parse(prompts3, strlen(prompts3), "prompts3", &ps, &err) == 0);
    uhlm_eval_opts o = small_opts();
    uhlm_eval_harness *h = uhlm_eval_harness_new(slm, llm, NULL, &ps, &o, &err);
    CHECKF(h != NULL, "%s", err.msg);
    if (!h) return;
    CHECK(uhlm_eval_harness_n_prompts(h) == 3 && uhlm_eval_harness_verifier(h) != NULL);
    /* per prompt: llm, llm-seed2, 4 modes, 5 greedy; sweep: uhlm + rand */
    CHECK(uhlm_eval_total_runs(h) == 3 * (6 * 2) + 3 * 2);
    uhlm_eval_results R;
    CHECKF(uhlm_eval_run_all(h, NULL, &R, &err) == 0, "%s", err.msg);
    check_sets(&R, 3);
    check_sums(&R);
    check_order_free(slm, llm, &R);
    check_reps(slm, llm, &R);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/harness", uhlm_test_tmpdir());
    CHECK(uhlm_eval_make_dir(dir, &err) == 0 && uhlm_eval_make_dir(dir, &err) == 0);
    CHECKF(uhlm_eval_write_reports(h, &R, dir, &err) == 0, "%s", err.msg);
    const char *files[] = {"results.csv", "sweep.csv", "methods.csv", "bins.csv",
                           "per_prompt.csv", "summary.md", "results.json", "answers.jsonl",
                           "intervals.csv"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++)
        CHECKF(file_size(dir, files[k]) > 0, "%s", files[k]);
    /* answers.jsonl: one line per per_prompt.csv row, each the text of its run's tokens */
    char path[1200], line[8192];
    snprintf(path, sizeof path, "%s/answers.jsonl", dir);
    FILE *f = fopen(path, "r");
    int n_lines = 0, texts_ok = 1;
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        const char *run = cJSON_GetStringValue(cJSON_GetObjectItem(o, "run"));
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(o, "text"));
        if (n_lines == 0 && run && text) {
            char *want = uhlm_detokenize(uhlm_model_tokenizer(slm), R.main[UHLM_MODE_LLM].rec[0].tokens,
                                         R.main[UHLM_MODE_LLM].rec[0].n_tokens);
            texts_ok = !strcmp(run, "llm") && want && !strcmp(want, text);
            free(want);
        }
        n_lines += o && run && text;
        cJSON_Delete(o);
    }
    if (f) fclose(f);
    CHECK(texts_ok && n_lines == 3 * 6 + 3 * 2); /* llm, llm-seed2, 4 modes; sweep uhlm, rand */
    char bad[1200];
    snprintf(bad, sizeof bad, "%s/results.csv", dir);
    CHECK(uhlm_eval_make_dir(bad, &err) == -1 && strstr(err.msg, "cannot create"));
    uhlm_eval_results_free(&R);
    uhlm_eval_harness_free(h);
    uhlm_prompts_free(&ps);
}

static void test_calib_collect(uhlm_model *slm, uhlm_model *llm) {
    uhlm_error err = {{0}};
    uhlm_prompt_set ps = {0};
    CHECK(uhlm_prompts_parse(prompts3, strlen(prompts3), "prompts3", &ps, &err) == 0);
    uhlm_calib_collect_opts o = {0};
    o.dp = uhlm_device_default_params();
    o.dp.n_gen = 16;
    o.split = 0.5;
    o.n_threads = 1;
    o.seed = 42;
    o.want_csv = 1;
    uhlm_calib_collection c;
    CHECKF(uhlm_calib_collect(slm, llm, &ps, &o, NULL, &c, &err) == 0, "%s", err.msg);
    CHECK(c.n_train_prompts + c.n_test_prompts == 3);
    CHECK(c.train.n + c.test.n > 0 && c.train.n + c.test.n <= 3 * 16);
    size_t lines = 0;
    for (size_t i = 0; i < c.csv_len; i++) lines += c.csv[i] == '\n';
    CHECK(lines == c.train.n + c.test.n + 1);
    for (size_t i = 0; i < c.train.n; i++)
        CHECK(c.train.s[i].u >= 0 && c.train.s[i].u <= 1 && c.train.s[i].beta >= 0 &&
              c.train.s[i].outright == (c.train.s[i].beta <= 0));
    uhlm_calib_analysis an;
    int ok = uhlm_calib_analyse(&c, o.split, 0.02, &an, &err);
    if (c.n_train_prompts && c.n_test_prompts) {
        CHECKF(ok == 0, "%s", err.msg);
        uhlm_calib_info info = {"slm", "llm", "p", 16, 0, 8, 1.0, 1.0, 1.0, &o.dp.payload,
                                UHLM_UNC_PERTURB, 42, 0.5, 0.0};
        size_t len = 0;
        char *js = uhlm_calib_report_json(&c, &an, &info, &len);
        CHECK(js && len == strlen(js) && js[len - 1] == '\n');
        cJSON *d = js ? cJSON_Parse(js) : NULL;
        CHECK(d && cJSON_GetObjectItem(d, "fit") && cJSON_GetObjectItem(d, "budget"));
        cJSON *sp = cJSON_GetObjectItem(d, "split");
        CHECK(sp && cJSON_GetObjectItem(sp, "train_tokens")->valuedouble == (double)c.train.n);
        cJSON_Delete(d);
        free(js);
    } else {
        CHECK(ok == -1 && strstr(err.msg, "both parts need"));
    }
    uhlm_calib_analysis_free(&an);
    uhlm_calib_collection_free(&c);
    /* a prompt too long for the context is named */
    uhlm_prompt_set big = {0};
    size_t n = 20000;
    char *txt = malloc(n + 64);
    CHECK(txt != NULL);
    if (txt) {
        strcpy(txt, "{\"id\": \"long\", \"prompt\": \"");
        size_t k = strlen(txt);
        for (size_t i = 0; i < n / 4; i++) memcpy(txt + k + 4 * i, "dog ", 4);
        strcpy(txt + k + n, "\"}\n");
        CHECK(uhlm_prompts_parse(txt, strlen(txt), "big", &big, &err) == 0);
        CHECK(uhlm_calib_collect(slm, llm, &big, &o, NULL, &c, &err) == -1);
        CHECKF(strstr(err.msg, "prompt long") != NULL, "%s", err.msg);
        uhlm_prompts_free(&big);
        free(txt);
    }
    uhlm_prompts_free(&ps);
}

int main(void) {
    uhlm_error err = {{0}};
    check_opts();
    uhlm_model *slm = uhlm_model_load(uhlm_test_model_path("stories-slm-0.28M.bin"),
                                      uhlm_test_model_path("tok512.bin"), &err);
    uhlm_model *llm = uhlm_model_load(uhlm_test_model_path("stories-llm-2.76M.bin"),
                                      uhlm_test_model_path("tok512.bin"), &err);
    CHECKF(slm && llm, "%s", err.msg);
    if (slm && llm) {
        CHECK(uhlm_eval_check_pair(slm, llm, &err) == 0);
    uhlm_prompt_set none = {0};
    uhlm_eval_opts o = small_opts();
    CHECK(uhlm_eval_harness_new(slm, llm, NULL, &none, &o, &err) == NULL &&
          strstr(err.msg, "no prompts"));
        test_eval_harness(slm, llm);
        test_calib_collect(slm, llm);
    }
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    return check_report();
}
