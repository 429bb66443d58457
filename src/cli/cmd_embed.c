/* cmd_embed.c: `uhlm embed`, the text embedding `uhlm eval` uses for its cosine-similarity
 * quality metric (see eval.h for the definition and why). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "cli/eval_common.h"
#include "uhlm/eval.h"
#include "uhlm/tokenizer.h"

static const cli_command embed_cmd = {
    "embed", "-p TEXT [-p TEXT...]",
    "Prints, for each text, one line with its embedding as a JSON array: the mean over\n"
    "the text's tokens of the model's final RMS-normed hidden state (the classifier's\n"
    "input), BOS fed first and not pooled. The default model is the LLM, the reference\n"
    "`uhlm eval` compares every mode against.",
    "With --json: one object {\"model\", \"dim\", \"embeddings\": [[...], ...]}, or with\n"
    "--cosine {\"model\", \"cosine\": [...]}.",
    0};

int cmd_embed(int argc, char **argv) {
    const char *cmd = "embed";
    const char *model_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    long threads = 0, n_ctx_arg = 0;
    int cosine = 0, json = 0, jsonl = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    cli_texts texts = {.n = 0};
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model_arg, .help = "embedding model"},
        CLI_ARG_TOKENIZER(&tok_arg),
        {.id = CLI_PROMPT, .dst = &texts, .def = "none",
         .help = "a text to embed; repeat for more; '-' reads standard input"},
        {.id = CLI_FILE, .dst = &texts, .help = "a text to embed, read from FILE"},
        CLI_ARG(CLI_CTX_SIZE, &n_ctx_arg),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        CLI_ARG(CLI_COSINE, &cosine),
        CLI_ARG(CLI_JSON, &json),
        {.id = CLI_JSONL, .dst = &jsonl, .help = "one line per text (the default output)"},
    };
    int rc = cli_parse(&embed_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (rc != CLI_CONTINUE) {
        cli_texts_free(&texts);
        return cli_exit_status(rc);
    }
    rc = 2;
    const int n_texts = texts.n;
    if (json && jsonl) {
        fprintf(stderr, "uhlm embed: give one of --json and --jsonl\n");
        goto out;
    }
    if (n_texts == 0 || (cosine && n_texts < 2)) {
        fprintf(stderr, "uhlm embed: %s\n",
                cosine ? "--cosine needs at least two texts (-p A -p B)" : "no text (-p TEXT)");
        goto out;
    }
    rc = 1;
    uhlm_error err = {{0}};
    uhlm_model *m = cli_load_model(cmd, model_arg, tok_arg, UHLM_LOAD_AUTO, "model");
    uhlm_ctx *ctx = NULL;
    int *ids = NULL;
    float *vec = NULL;
    if (!m) goto out;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    cp.simd = simd;
    cp.n_ctx = (int)n_ctx_arg;
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
        int n = uhlm_tokenize(uhlm_model_tokenizer(m), texts.v[t], strlen(texts.v[t]), 0, 0, ids, cap, &err);
        if (n < 0 || uhlm_embed_tokens(ctx, ids, n, vec + (size_t)t * D, &err) != 0) {
            fprintf(stderr, "uhlm embed: text %d: %s\n", t + 1, err.msg);
            goto free_all;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *arr = NULL;
        if (o) {
            cJSON_AddStringToObject(o, "model", uhlm_model_path(m));
            if (!cosine) cJSON_AddNumberToObject(o, "dim", D);
            arr = cJSON_AddArrayToObject(o, cosine ? "cosine" : "embeddings");
        }
        for (int t = cosine ? 1 : 0; arr && t < n_texts; t++) {
            const float *v = vec + (size_t)t * D;
            cJSON_AddItemToArray(arr, cosine ? cJSON_CreateNumber(uhlm_cosine(vec, v, D))
                                             : cJSON_CreateFloatArray(v, D));
        }
        if (!arr) {
            cJSON_Delete(o);
            o = NULL;
        }
        if (cli_print_json(cmd, o) != 0) goto free_all;
    }
    for (int t = 0; !json && t < n_texts; t++) {
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
    cli_texts_free(&texts);
    return rc;
}
