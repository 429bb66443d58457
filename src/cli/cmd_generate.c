/* cmd_generate.c: `uhlm generate`, plain autoregressive generation with one model. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "uhlm/chat.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

static const cli_command generate_cmd = {
    "generate", NULL,
    "Generates text with one model (llama2.c .bin, or any supported GGUF: see README).",
    "Text goes to stdout, statistics to stderr.", 0};

int cmd_generate(int argc, char **argv) {
    const char *model_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL, *system = NULL;
    cli_texts prompts = {.n = 0};
    int chat = 0;
    long n_gen = 256, top_k = 0, threads = 0, n_ctx_arg = 0;
    double temp = 1.0, top_p = 1.0;
    uint64_t seed = 42;
    int json = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    const char *cmd = "generate";
    const cli_arg args[] = {
        CLI_ARG(CLI_MODEL, &model_arg), CLI_ARG(CLI_TOKENIZER, &tok_arg),
        CLI_ARG(CLI_PROMPT, &prompts),  CLI_ARG(CLI_FILE, &prompts),
        CLI_ARG(CLI_CHAT, &chat),       CLI_ARG(CLI_SYSTEM, &system),
        CLI_ARG(CLI_N_PREDICT, &n_gen), CLI_ARG(CLI_CTX_SIZE, &n_ctx_arg),
        CLI_ARG(CLI_SEED, &seed),       CLI_ARGS_SAMPLING(&temp, &top_k, &top_p),
        CLI_ARG(CLI_THREADS, &threads), CLI_ARG(CLI_SIMD, &simd),
        {.id = CLI_JSON, .dst = &json,
         .help = "print a JSON object with text, token ids and stats instead"},
    };
    int prc = cli_parse(&generate_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) {
        cli_texts_free(&prompts);
        return cli_exit_status(prc);
    }
    const char *prompt = cli_texts_last(&prompts, "");
    int rc = 1;
    if (system && !chat) {
        fprintf(stderr, "uhlm generate: --system needs --chat\n");
        cli_texts_free(&prompts);
        return 2;
    }
    uhlm_error err = {{0}};
    uhlm_model *m = cli_load_model(cmd, model_arg, tok_arg, NULL);
    if (!m || (chat && cli_check_chat(cmd, m) != 0)) {
        uhlm_model_free(m);
        cli_texts_free(&prompts);
        return 1;
    }
    const char *mpath = uhlm_model_path(m);
    uhlm_sampling samp = {(float)temp, (int)top_k, (float)top_p};
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    cp.simd = simd;
    cp.n_ctx = (int)n_ctx_arg;
    uhlm_ctx *ctx = uhlm_ctx_new(m, &cp, &err);
    if (!ctx) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        uhlm_model_free(m);
        cli_texts_free(&prompts);
        return 1;
    }
    int V = uhlm_model_config(m)->vocab_size, n_ctx = uhlm_ctx_n_ctx(ctx);
    size_t plen = strlen(prompt);
    int *ids = malloc(sizeof(int) * ((size_t)n_ctx + 1));
    uhlm_batch_entry *batch = malloc(sizeof(uhlm_batch_entry) * ((size_t)n_ctx + 1));
    float *logits = malloc(sizeof(float) * (size_t)V);
    float *probs = malloc(sizeof(float) * (size_t)V);
    int maxp = uhlm_tokenizer_max_piece_len(uhlm_model_tokenizer(m)) + 16;
    char *piece = malloc((size_t)maxp);
    cli_text text;
    int text_ok = cli_text_init(&text, !json) == 0;
    if (!ids || !batch || !logits || !probs || !piece || !text_ok) {
        fprintf(stderr, "uhlm generate: out of memory\n");
        goto done;
    }
    int np = chat ? uhlm_chat_tokenize(m, system, prompt, ids, n_ctx, &err)
                  : uhlm_tokenize(uhlm_model_tokenizer(m), prompt, plen, uhlm_tokenizer_add_bos(uhlm_model_tokenizer(m)), 0, ids,
                                  n_ctx, &err);
    if (np < 0) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        goto done;
    }
    if (np >= n_ctx) {
        fprintf(stderr, "uhlm generate: prompt is %d tokens, the context holds %d\n", np, n_ctx);
        goto done;
    }
    uhlm_rng rng;
    uhlm_rng_seed(&rng, seed);
    uhlm_detok dt;
    uhlm_detok_init(&dt, uhlm_model_tokenizer(m));
    for (int i = 0; i < np; i++) {
        batch[i] = (uhlm_batch_entry){0, i, ids[i], i == np - 1};
        /* the prompt's own text (minus BOS) is part of the output, as llama2.c prints it;
         * a chat prompt is not: the template is not the user's text */
        size_t k = uhlm_detok_push(&dt, ids[i], piece, (size_t)maxp);
        if (!json && !chat) fwrite(piece, 1, k, stdout);
    }
    if (!json) fflush(stdout);
    double t0 = uhlm_now();
    if (uhlm_decode(ctx, batch, np, logits, NULL, &err) != 0) {
        fprintf(stderr, "uhlm generate: %s\n", err.msg);
        goto done;
    }
    double t_prompt = uhlm_now() - t0;
    int n_out = 0, pos = np;
    double t1 = uhlm_now();
    const char *stop = "length";
    while (n_out < n_gen) {
        if (uhlm_sampling_probs(&samp, logits, V, probs) < 0) {
            fprintf(stderr, "uhlm generate: out of memory\n");
            goto done;
        }
        int tok = uhlm_sample(probs, V, &rng);
        ids[pos] = tok;
        n_out++;
        if (uhlm_tokenizer_is_eog(uhlm_model_tokenizer(m), tok)) {
            stop = "eos";
            break;
        }
        size_t k = uhlm_detok_push(&dt, tok, piece, (size_t)maxp);
        if (cli_text_add(&text, piece, k) != 0) {
            fprintf(stderr, "uhlm generate: out of memory\n");
            goto done;
        }
        if (pos + 1 >= n_ctx) {
            stop = "context";
            pos++;
            break;
        }
        uhlm_batch_entry be = {0, pos, tok, 1};
        if (uhlm_decode(ctx, &be, 1, logits, NULL, &err) != 0) {
            fprintf(stderr, "uhlm generate: %s\n", err.msg);
            goto done;
        }
        pos++;
    }
    size_t k = uhlm_detok_flush(&dt, piece, (size_t)maxp);
    if (cli_text_end(&text, piece, k) != 0) {
        fprintf(stderr, "uhlm generate: out of memory\n");
        goto done;
    }
    double t_gen = uhlm_now() - t1;
    fprintf(stderr,
            "uhlm generate: prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s "
            "(%.1f tok/s), stop: %s, simd %s, threads %d\n",
            np, t_prompt, t_prompt > 0 ? np / t_prompt : 0.0, n_out, t_gen,
            t_gen > 0 ? n_out / t_gen : 0.0, stop, uhlm_simd_name(uhlm_ctx_simd(ctx)),
            (int)threads);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", mpath);
        cJSON_AddStringToObject(o, "prompt", prompt);
        if (chat) {
            cJSON_AddStringToObject(o, "chat_template", uhlm_chat_model_template(m).name);
            if (system) cJSON_AddStringToObject(o, "system", system);
        }
        cJSON_AddStringToObject(o, "text", text.buf);
        cJSON *a = cJSON_AddArrayToObject(o, "tokens");
        for (int i = np; i < np + n_out && i < n_ctx; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
        cJSON_AddNumberToObject(o, "prompt_tokens", np);
        cJSON_AddNumberToObject(o, "generated_tokens", n_out);
        cJSON_AddNumberToObject(o, "prompt_seconds", t_prompt);
        cJSON_AddNumberToObject(o, "generate_seconds", t_gen);
        cJSON_AddNumberToObject(o, "prompt_tokens_per_second", t_prompt > 0 ? np / t_prompt : 0);
        cJSON_AddNumberToObject(o, "generate_tokens_per_second", t_gen > 0 ? n_out / t_gen : 0);
        cJSON_AddStringToObject(o, "stop", stop);
        cJSON_AddNumberToObject(o, "seed", (double)seed);
        cJSON_AddNumberToObject(o, "temperature", temp);
        if (cli_print_json(cmd, o) != 0) goto done;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uhlm generate: error writing output\n");
        goto done;
    }
    rc = 0;
done:
    free(ids);
    free(batch);
    free(logits);
    free(probs);
    free(piece);
    if (text_ok) cli_text_free(&text);
    uhlm_ctx_free(ctx);
    uhlm_model_free(m);
    cli_texts_free(&prompts);
    return rc;
}
