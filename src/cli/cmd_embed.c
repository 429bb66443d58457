/* cmd_embed.c: `uhlm embed`, the text embedding `uhlm eval` uses for its cosine-similarity
 * quality metric (see eval.h for the definition and why). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/eval_common.h"
#include "uhlm/eval.h"
#include "uhlm/tokenizer.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: uhlm embed [-m MODEL] [-z TOKENIZER] [-t THREADS] [--cosine] -p TEXT [-p TEXT...]\n\n"
            "Prints, for each text, one line with its embedding as a JSON array: the mean over\n"
            "the text's tokens of the model's final RMS-normed hidden state (the classifier's\n"
            "input), BOS fed first and not pooled. The default model is the LLM (%s),\n"
            "the reference `uhlm eval` compares every mode against.\n\n"
            "  -m MODEL     embedding model (default %s)\n"
            "  --cosine     instead, print the cosine similarity of the first text with each\n"
            "               of the others, one per line\n",
            UHLM_DEFAULT_LLM, UHLM_DEFAULT_LLM);
}

int cmd_embed(int argc, char **argv) {
    const char *cmd = "embed";
    const char *model_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    long threads = 1;
    int cosine = 0, n_texts = 0;
    const char **texts = calloc((size_t)argc + 1, sizeof *texts);
    if (!texts) {
        fprintf(stderr, "uhlm embed: out of memory\n");
        return 1;
    }
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            free(texts);
            return 0;
        } else if (!strcmp(a, "--cosine")) {
            cosine = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "-z") || !strcmp(a, "-p") || !strcmp(a, "-t")) {
            if (!(v = cli_need_arg(cmd, argc, argv, &i))) goto out;
            if (!strcmp(a, "-m"))
                model_arg = v;
            else if (!strcmp(a, "-z"))
                tok_arg = v;
            else if (!strcmp(a, "-p"))
                texts[n_texts++] = v;
            else if (cli_parse_int(cmd, a, v, 0, 1024, &threads))
                goto out;
        } else {
            fprintf(stderr, "uhlm embed: unknown option '%s' (see 'uhlm embed --help')\n", a);
            goto out;
        }
    }
    if (n_texts == 0 || (cosine && n_texts < 2)) {
        fprintf(stderr, "uhlm embed: %s\n",
                cosine ? "--cosine needs at least two texts (-p A -p B)" : "no text (-p TEXT)");
        goto out;
    }
    rc = 1;
    uhlm_error err = {{0}};
    uhlm_model *m = cli_load_model(cmd, model_arg, tok_arg, "model");
    uhlm_ctx *ctx = NULL;
    int *ids = NULL;
    float *vec = NULL;
    if (!m) goto out;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    if (!(ctx = uhlm_ctx_new(m, &cp, &err))) {
        fprintf(stderr, "uhlm embed: %s\n", err.msg);
        goto free_all;
    }
    int D = uhlm_model_config(m)->dim, cap = uhlm_ctx_n_ctx(ctx) + 1;
    ids = malloc(sizeof(int) * (size_t)cap);
    vec = malloc(sizeof(float) * (size_t)D * (size_t)n_texts);
    if (!ids || !vec) {
        fprintf(stderr, "uhlm embed: out of memory\n");
        goto free_all;
    }
    for (int t = 0; t < n_texts; t++) {
        int n = uhlm_tokenize(uhlm_model_tokenizer(m), texts[t], strlen(texts[t]), 0, 0, ids, cap, &err);
        if (n < 0 || uhlm_embed_tokens(ctx, ids, n, vec + (size_t)t * D, &err) != 0) {
            fprintf(stderr, "uhlm embed: text %d: %s\n", t + 1, err.msg);
            goto free_all;
        }
    }
    for (int t = 0; t < n_texts; t++) {
        if (cosine) {
            if (t > 0) printf("%.6f\n", uhlm_cosine(vec, vec + (size_t)t * D, D));
            continue;
        }
        for (int j = 0; j < D; j++) printf("%s%.7g", j ? "," : "[", vec[(size_t)t * D + j]);
        printf("]\n");
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uhlm embed: error writing output\n");
        goto free_all;
    }
    rc = 0;
free_all:
    free(ids);
    free(vec);
    uhlm_ctx_free(ctx);
    uhlm_model_free(m);
out:
    free(texts);
    return rc;
}
