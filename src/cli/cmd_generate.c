/* cmd_generate.c: `uhlm generate`, plain autoregressive generation with one model. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_signal.h"
#include "cli/options.h"
#include "uhlm/chat.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

static const cli_command generate_cmd = {
    "generate", NULL,
    "Generates text with one model (llama2.c .bin, or any supported GGUF: see README).",
    "Text goes to stdout, statistics to stderr.", 0};

typedef struct {
    const char *model_arg, *tok_arg, *system, *prompt;
    int chat, json;
    long n_gen, top_k, threads, n_ctx_arg;
    double temp, top_p;
    uint64_t seed;
    uhlm_simd simd;
    uhlm_numerics numerics;
    uhlm_load_mode load;
} gen_opts;

/* One generation: the model and its context, the buffers, and what the report says. */
typedef struct {
    uhlm_model *m;
    uhlm_ctx *ctx;
    int *ids;
    uhlm_batch_entry *batch;
    float *logits, *probs;
    char *piece;
    int maxp, V, n_ctx, np, n_out;
    cli_text text;
    uhlm_detok dt;
    double t_prompt, t_gen;
    const char *stop;
    int interrupted; /* Ctrl-C stopped the loop: the report says so and the exit status is 130 */
} gen_state;

static void gen_free(gen_state *g) {
    free(g->ids);
    free(g->batch);
    free(g->logits);
    free(g->probs);
    free(g->piece);
    cli_text_free(&g->text);
    uhlm_ctx_free(g->ctx);
    uhlm_model_free(g->m);
}

/* Loads the model, opens its context and allocates the buffers. */
static int gen_open(const gen_opts *o, gen_state *g) {
    uhlm_error err = {{0}};
    g->m = cli_load_model("generate", o->model_arg, o->tok_arg, o->load, NULL);
    if (!g->m || (o->chat && cli_check_chat("generate", g->m) != 0)) return 1;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)o->threads;
    cp.simd = o->simd;
    cp.numerics = o->numerics;
    cp.n_ctx = (int)o->n_ctx_arg;
    if (!(g->ctx = uhlm_ctx_new(g->m, &cp, &err))) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        return 1;
    }
    g->V = uhlm_model_config(g->m)->vocab_size;
    g->n_ctx = uhlm_ctx_n_ctx(g->ctx);
    size_t V = (size_t)g->V, n = (size_t)g->n_ctx + 1;
    g->ids = malloc(sizeof(int) * n);
    g->batch = malloc(sizeof(uhlm_batch_entry) * n);
    g->logits = malloc(sizeof(float) * V);
    g->probs = malloc(sizeof(float) * V);
    g->maxp = uhlm_tokenizer_max_piece_len(uhlm_model_tokenizer(g->m)) + 16;
    g->piece = malloc((size_t)g->maxp);
    int text_ok = cli_text_init(&g->text, !o->json) == 0;
    if (!g->ids || !g->batch || !g->logits || !g->probs || !g->piece || !text_ok) {
        fprintf(stderr, "uhlm generate: out of memory\n");
        return 1;
    }
    return 0;
}

/* Tokenizes the prompt, echoes its text (unless --json or --chat) and decodes it. */
static int gen_prompt(const gen_opts *o, gen_state *g) {
    uhlm_error err = {{0}};
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(g->m);
    int n_ctx = g->n_ctx;
    int np = o->chat ? uhlm_chat_tokenize(g->m, o->system, o->prompt, g->ids, n_ctx, &err)
                     : uhlm_tokenize(tok, o->prompt, strlen(o->prompt),
                                     uhlm_tokenizer_add_bos(tok), 0, g->ids, n_ctx, &err);
    if (np < 0) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        return 1;
    }
    if (np >= n_ctx) {
        fprintf(stderr, "uhlm generate: prompt is %d tokens, the context holds %d\n", np, n_ctx);
        return 1;
    }
    g->np = np;
    uhlm_detok_init(&g->dt, tok);
    for (int i = 0; i < np; i++) {
        g->batch[i] = (uhlm_batch_entry){0, i, g->ids[i], i == np - 1};
        /* the prompt's own text (minus BOS) is part of the output, as llama2.c prints it;
         * a chat prompt is not: the template is not the user's text */
        size_t k = uhlm_detok_push(&g->dt, g->ids[i], g->piece, (size_t)g->maxp);
        if (!o->json && !o->chat) fwrite(g->piece, 1, k, stdout);
    }
    if (!o->json) fflush(stdout);
    double t0 = uhlm_now();
    if (uhlm_decode(g->ctx, g->batch, np, g->logits, NULL, &err) != 0) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        return 1;
    }
    g->t_prompt = uhlm_now() - t0;
    return 0;
}

/* Samples up to --n-predict tokens, to an end-of-generation token or the context's end. */
static int gen_sample(const gen_opts *o, gen_state *g) {
    uhlm_error err = {{0}};
    uhlm_sampling samp = {(float)o->temp, (int)o->top_k, (float)o->top_p};
    uhlm_rng rng;
    uhlm_rng_seed(&rng, o->seed);
    size_t maxp = (size_t)g->maxp;
    int pos = g->np;
    double t1 = uhlm_now();
    g->stop = "length";
    while (g->n_out < o->n_gen) {
        if (cli_interrupted()) {
            g->stop = "cancelled"; /* the library's word for the same stop (device.h) */
            g->interrupted = 1;
            break;
        }
        if (uhlm_sampling_probs(&samp, g->logits, g->V, g->probs) < 0) {
            fprintf(stderr, "uhlm generate: out of memory\n");
            return 1;
        }
        int tok = uhlm_sample(g->probs, g->V, &rng);
        g->ids[pos] = tok;
        g->n_out++;
        if (uhlm_tokenizer_is_eog(uhlm_model_tokenizer(g->m), tok)) {
            g->stop = "eos";
            break;
        }
        size_t k = uhlm_detok_push(&g->dt, tok, g->piece, maxp);
        if (cli_text_add(&g->text, g->piece, k) != 0) {
            fprintf(stderr, "uhlm generate: out of memory\n");
            return 1;
        }
        if (pos + 1 >= g->n_ctx) {
            g->stop = "context";
            pos++;
            break;
        }
        uhlm_batch_entry be = {0, pos, tok, 1};
        if (uhlm_decode(g->ctx, &be, 1, g->logits, NULL, &err) != 0) {
            fprintf(stderr, "uhlm generate: %s\n", err.msg);
            return 1;
        }
        pos++;
    }
    size_t k = uhlm_detok_flush(&g->dt, g->piece, maxp);
    if (cli_text_end(&g->text, g->piece, k) != 0) {
        fprintf(stderr, "uhlm generate: out of memory\n");
        return 1;
    }
    g->t_gen = uhlm_now() - t1;
    return 0;
}

static int gen_print_json(const gen_opts *o, const gen_state *g) {
    int np = g->np, n_out = g->n_out;
    double t_prompt = g->t_prompt, t_gen = g->t_gen;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", uhlm_model_path(g->m));
    cJSON_AddStringToObject(j, "prompt", o->prompt);
    if (o->chat) {
        cJSON_AddStringToObject(j, "chat_template", uhlm_chat_model_template(g->m).name);
        if (o->system) cJSON_AddStringToObject(j, "system", o->system);
    }
    cJSON_AddStringToObject(j, "text", g->text.buf);
    cJSON *a = cJSON_AddArrayToObject(j, "tokens");
    for (int i = np; i < np + n_out && i < g->n_ctx; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(g->ids[i]));
    cJSON_AddNumberToObject(j, "prompt_tokens", np);
    cJSON_AddNumberToObject(j, "generated_tokens", n_out);
    cJSON_AddNumberToObject(j, "prompt_seconds", t_prompt);
    cJSON_AddNumberToObject(j, "generate_seconds", t_gen);
    cJSON_AddNumberToObject(j, "prompt_tokens_per_second", t_prompt > 0 ? np / t_prompt : 0);
    cJSON_AddNumberToObject(j, "generate_tokens_per_second", t_gen > 0 ? n_out / t_gen : 0);
    cJSON_AddStringToObject(j, "stop", g->stop);
    /* only when true, so an uninterrupted run's document is unchanged */
    if (g->interrupted) cJSON_AddBoolToObject(j, "interrupted", 1);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "temperature", o->temp);
    return cli_print_json("generate", j) != 0 ? 1 : 0;
}

/* The statistics line on stderr, then --json's document. */
static int gen_report(const gen_opts *o, const gen_state *g) {
    int np = g->np, n_out = g->n_out;
    double t_prompt = g->t_prompt, t_gen = g->t_gen;
    fprintf(stderr,
            "uhlm generate: prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s "
            "(%.1f tok/s), stop: %s, simd %s, threads %d%s\n",
            np, t_prompt, t_prompt > 0 ? np / t_prompt : 0.0, n_out, t_gen,
            t_gen > 0 ? n_out / t_gen : 0.0, g->stop, uhlm_simd_name(uhlm_ctx_simd(g->ctx)),
            (int)o->threads, o->numerics == UHLM_NUMERICS_GGML ? ", numerics ggml" : "");
    if (g->interrupted) fprintf(stderr, "uhlm generate: interrupted after %d tokens\n", n_out);
    if (o->json && gen_print_json(o, g) != 0) return 1;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uhlm generate: error writing output\n");
        return 1;
    }
    return 0;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o = {.model_arg = UHLM_DEFAULT_LLM, .n_gen = 256, .temp = 1.0, .top_p = 1.0,
                  .seed = 42, .simd = UHLM_SIMD_AUTO};
    cli_texts prompts = {.n = 0};
    const cli_arg args[] = {
        CLI_ARG(CLI_MODEL, &o.model_arg), CLI_ARG_TOKENIZER(&o.tok_arg),
        CLI_ARG(CLI_PROMPT, &prompts),    CLI_ARG(CLI_FILE, &prompts),
        CLI_ARG(CLI_CHAT, &o.chat),       CLI_ARG(CLI_SYSTEM, &o.system),
        CLI_ARG(CLI_N_PREDICT, &o.n_gen), CLI_ARG(CLI_CTX_SIZE, &o.n_ctx_arg),
        CLI_ARG(CLI_SEED, &o.seed),       CLI_ARGS_SAMPLING(&o.temp, &o.top_k, &o.top_p),
        CLI_ARG(CLI_THREADS, &o.threads), CLI_ARG(CLI_SIMD, &o.simd),
        CLI_ARG(CLI_NUMERICS, &o.numerics), CLI_ARG(CLI_LOAD, &o.load),
        {.id = CLI_JSON, .dst = &o.json,
         .help = "print a JSON object with text, token ids and stats instead"},
    };
    int prc = cli_parse(&generate_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) {
        cli_texts_free(&prompts);
        return cli_exit_status(prc);
    }
    o.prompt = cli_texts_last(&prompts, "");
    if (o.system && !o.chat) {
        fprintf(stderr, "uhlm generate: --system needs --chat\n");
        cli_texts_free(&prompts);
        return 2;
    }
    gen_state g = {.text = {NULL, 0, 0, 0}};
    int rc = gen_open(&o, &g);
    if (rc == 0) rc = gen_prompt(&o, &g);
    /* only the token loop is interruptible: before it there is no partial text to print */
    if (rc == 0 && cli_sigint_install("generate") != 0) rc = 1;
    if (rc == 0) rc = gen_sample(&o, &g);
    cli_sigint_restore();
    if (rc == 0) rc = gen_report(&o, &g);
    if (rc == 0 && g.interrupted) rc = CLI_EXIT_INTERRUPTED;
    gen_free(&g);
    cli_texts_free(&prompts);
    return rc;
}
