/* device_generate.c: the device side of U-HLM embedded in a program, against the installed
 * library only (pkg-config --cflags --libs uhlm).
 *
 * usage: device_generate MODELS_DIR [PROMPT] [N_GEN]
 *   MODELS_DIR holds stories-slm-0.28M.bin, stories-llm-2.76M.bin and tok512.bin.
 * Loads the TinyStories SLM+LLM pair, runs uncertainty-aware hybrid generation in process
 * (uhlm_generate), prints the text, then the run's statistics on one line (times on
 * stderr: stdout is fixed by the seed). Exit 0 on
 * success. A second, cancelled run shows the cancel callback: it stops after 5 tokens with
 * UHLM_CANCELLED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uhlm/uhlm.h>

static uhlm_model *load(const char *dir, const char *name, uhlm_error *err) {
    char path[4096], tok[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tok, sizeof tok, "%s/tok512.bin", dir);
    return uhlm_model_load(path, tok, err);
}

typedef struct {
    int seen, limit;
} counter;

static void on_token(void *user, const uhlm_token_event *ev) {
    (void)ev;
    ((counter *)user)->seen++;
}

static int stop_after_limit(void *user) {
    const counter *c = user;
    return c->seen >= c->limit;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODELS_DIR [PROMPT] [N_GEN]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
    int n_gen = argc > 3 ? atoi(argv[3]) : 48;
    if (strcmp(uhlm_version(), UHLM_VERSION) != 0)
        fprintf(stderr, "note: headers %s, library %s\n", UHLM_VERSION, uhlm_version());

    uhlm_error err;
    uhlm_model *slm = load(argv[1], "stories-slm-0.28M.bin", &err);
    uhlm_model *llm = slm ? load(argv[1], "stories-llm-2.76M.bin", &err) : NULL;
    if (!slm || !llm) {
        fprintf(stderr, "device_generate: %s\n", err.msg);
        uhlm_model_free(slm);
        return 1;
    }
    const uhlm_config *sc = uhlm_model_config(slm), *lc = uhlm_model_config(llm);
    printf("uhlm %s: SLM %d layers dim %d, LLM %d layers dim %d, vocabulary %d\n", uhlm_version(),
           sc->n_layers, sc->dim, lc->n_layers, lc->dim, uhlm_model_n_vocab(slm));

    uhlm_generate_params p = uhlm_generate_default_params();
    p.device.policy.mode = UHLM_MODE_UHLM;
    p.device.n_gen = n_gen;
    p.seed = 42;
    p.ctx.n_threads = 1;
    char *text = NULL;
    uhlm_device_report rep;
    int rc = uhlm_generate(slm, llm, prompt, &p, &text, &rep, &err);
    if (rc != 0) {
        fprintf(stderr, "device_generate: %s\n", err.msg);
        uhlm_model_free(slm);
        uhlm_model_free(llm);
        return 1;
    }
    printf("%s%s\n", prompt, text);
    const uhlm_device_stats *s = &rep.stats;
    printf("mode %s, %d tokens (stop: %s), TR %.3f (%d sent, %d skipped), %d rejected, "
           "uplink %llu bits\n",
           uhlm_mode_name(rep.params.policy.mode), s->generated, s->stop, uhlm_stats_tr(s),
           s->transmitted, s->skipped, s->rejected, (unsigned long long)s->uplink_bits);
    /* times are measured, so they go apart from the output a seed fixes */
    fprintf(stderr, "compute %.4f s, accounted (compute + link) %.4f s\n",
            uhlm_stats_compute_s(s), uhlm_stats_accounted_s(s));
    free(text);

    /* the same run, cancelled after 5 tokens */
    counter c = {0, 5};
    p.on_token = on_token;
    p.on_token_user = &c;
    p.cancel = stop_after_limit;
    p.cancel_user = &c;
    rc = uhlm_generate(slm, llm, prompt, &p, &text, &rep, &err);
    int ok = rc == UHLM_CANCELLED && text && rep.stats.generated == 5 &&
             !strcmp(rep.stats.stop, "cancelled");
    printf("cancelled run: rc %d, %d tokens, stop %s\n", rc, rep.stats.generated,
           rc == UHLM_CANCELLED ? rep.stats.stop : "-");
    free(text);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    if (!ok) {
        fprintf(stderr, "device_generate: the cancel callback did not stop the run at 5 tokens\n");
        return 1;
    }
    return 0;
}
