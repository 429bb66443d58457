/* cmd_run.c: `uhlm run`, hybrid SLM+LLM generation (the five modes of DESIGN §2.4) over the
 * in-process verifier, or over a `uhlm serve` server with --server (the remote verifier,
 * uhlm/remote.h: same device loop, same output for a seed), with an accounted or shaped
 * channel. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_report.h"
#include "cli/cli_remote.h"
#include "cli/options.h"
#include "uhlm/calib.h"
#include "uhlm/chat.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/remote.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

static const cli_command run_cmd = {
    "run", NULL,
    "Hybrid generation: a small model (SLM, the device) drafts every token; depending on\n"
    "the mode, a large model (LLM, the server, here in the same process) verifies it by\n"
    "speculative sampling. Link time comes from an accounted wireless channel model.",
    "Text goes to stdout; a one-line summary of the stats goes to stderr.", 0};

typedef struct {
    cJSON *events; /* NULL unless --events */
} run_state;

/* Link events of the remote verifier (lost, reconnected), one line each on stderr. */
static void remote_log(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "uhlm run: %s\n", msg);
}

static cJSON *num_or_null(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static void on_token(void *user, const uhlm_token_event *ev) {
    run_state *st = user;
    if (!st->events) return;
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddNumberToObject(o, "pos", ev->pos);
    cJSON_AddNumberToObject(o, "draft", ev->draft);
    cJSON_AddNumberToObject(o, "token", ev->token);
    cJSON_AddItemToObject(o, "u", num_or_null(ev->u));
    cJSON_AddBoolToObject(o, "verified", ev->verified);
    cJSON_AddBoolToObject(o, "accepted", ev->accepted);
    cJSON_AddItemToObject(o, "x_d", num_or_null(ev->x_d));
    cJSON_AddItemToObject(o, "y_d", ev->have_y ? num_or_null(ev->y_d) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "beta", ev->have_y ? num_or_null(ev->beta) : cJSON_CreateNull());
    cJSON_AddNumberToObject(o, "catchup", ev->n_catchup);
    cJSON_AddNumberToObject(o, "uplink_bits", (double)ev->up_bits);
    cJSON_AddNumberToObject(o, "link_seconds", ev->link_s);
    cJSON_AddItemToArray(st->events, o);
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    const char *slm_arg = UHLM_DEFAULT_SLM, *llm_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    const char *system = NULL;
    int chat = 0;
    long threads = 0, n_gen = 256, top_k = 0, samples = UHLM_UNC_DEFAULT_SAMPLES;
    double temp = 1.0, top_p = 1.0, theta_max = UHLM_UNC_DEFAULT_THETA_MAX;
    double snr = UHLM_CHANNEL_DEFAULT_SNR_DB, bw = UHLM_CHANNEL_DEFAULT_BANDWIDTH, lat = 0.0;
    double dsnr = NAN, dbw = NAN;
    uint64_t seed = 42;
    int json = 0, events = 0, shadow = 0, require_server = 0;
    const char *server = NULL, *token_file = NULL;
    double connect_to = 3.0, read_to = 30.0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    uhlm_device_params dp = uhlm_device_default_params();
    uhlm_error err = {{0}};
    const char *calib_path = NULL, *risk = NULL; /* --calib F --risk averse|prone|budget[:R] */
    long max_in_mb = UHLM_INPUT_MAX_MB;
    cli_texts prompts = {.n = 0};
    long n_ctx_arg = 0;
    const cli_arg args[] = {
        CLI_ARGS_PAIR(&slm_arg, &llm_arg, &tok_arg),
        CLI_ARG(CLI_PROMPT, &prompts),
        CLI_ARG(CLI_FILE, &prompts),
        CLI_ARG(CLI_CHAT, &chat),
        CLI_ARG(CLI_SYSTEM, &system),
        CLI_ARG(CLI_N_PREDICT, &n_gen),
        CLI_ARG(CLI_CTX_SIZE, &n_ctx_arg),
        CLI_ARG(CLI_SEED, &seed),
        CLI_ARGS_SAMPLING(&temp, &top_k, &top_p),
        CLI_ARG(CLI_MODE, &dp.policy.mode),
        CLI_ARG(CLI_UTH, &dp.policy.u_th),
        CLI_ARG(CLI_SKIP_PROB, &dp.policy.skip_prob),
        CLI_ARG(CLI_CALIB, &calib_path),
        CLI_ARG(CLI_RISK, &risk),
        CLI_ARG(CLI_SHADOW, &shadow),
        CLI_ARGS_UNCERTAINTY(&dp.unc.method, &samples, &theta_max),
        CLI_ARG(CLI_PAYLOAD, &dp.payload),
        CLI_ARG(CLI_SNR, &snr),
        CLI_ARG(CLI_BANDWIDTH, &bw),
        CLI_ARG(CLI_DOWN_SNR, &dsnr),
        CLI_ARG(CLI_DOWN_BANDWIDTH, &dbw),
        CLI_ARG(CLI_LATENCY, &lat),
        CLI_ARG(CLI_FADING, &dp.channel.fading),
        CLI_ARG(CLI_CHANNEL, &dp.channel.mode),
        CLI_ARG(CLI_SERVER, &server),
        CLI_ARGS_REMOTE(&token_file, &connect_to, &read_to),
        CLI_ARG(CLI_REQUIRE_SERVER, &require_server),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        {.id = CLI_JSON, .dst = &json, .help = "print one JSON object (text, tokens, full stats) "
                                               "instead of text"},
        CLI_ARG(CLI_EVENTS, &events),
        {.id = CLI_MAX_INPUT_MB, .dst = &max_in_mb, .help = "largest --calib file read, in MiB"},
    };
    int prc = cli_parse(&run_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    const char *prompt = cli_texts_last(&prompts, "");
    if (prc != CLI_CONTINUE) {
        cli_texts_free(&prompts);
        return cli_exit_status(prc);
    }
    int rc = 2;
    uhlm_model *slm = NULL, *llm = NULL;
    uhlm_ctx *slm_ctx = NULL, *shadow_ctx = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_device *dev = NULL;
    int *ids = NULL;
    char *piece = NULL;
    cli_text text = {NULL, 0, 0, 0};
    run_state rs = {NULL};
    uhlm_mode mode = dp.policy.mode;
    cli_remote remote_opts;
    if (events && !json) {
        fprintf(stderr, "uhlm run: --events needs --json\n");
        goto done;
    }
    if (system && !chat) {
        fprintf(stderr, "uhlm run: --system needs --chat\n");
        goto done;
    }
    if ((calib_path != NULL) != (risk != NULL)) {
        fprintf(stderr, "uhlm run: --calib FILE and --risk averse|prone|budget|budget:R (R in "
                        "[0, 1]) go together\n");
        goto done;
    }
    rc = 1;
    if (calib_path && uhlm_calib_load_threshold_max(calib_path, risk, (uint64_t)max_in_mb << 20,
                                                   &dp.policy.u_th, &err) != 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        goto done;
    }
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples;
    dp.unc.theta_max = theta_max;
    dp.channel.up = (uhlm_link){bw, snr, lat};
    dp.channel.down = (uhlm_link){isnan(dbw) ? bw : dbw, isnan(dsnr) ? snr : dsnr, lat};
    if ((rc = cli_remote_setup("run", server, token_file, &remote_opts)) != 0) goto done;
    if (require_server && !server) {
        fprintf(stderr, "uhlm run: --require-server needs --server\n");
        rc = 2;
        goto done;
    }
    remote_opts.require = require_server;
    rc = 1;

    /* with a server the LLM lives there; it is loaded here only to shadow skipped tokens */
    int need_llm = !server || (shadow && mode != UHLM_MODE_LLM);
    if (!(slm = cli_load_model(cmd, slm_arg, tok_arg, "SLM")) ||
        (need_llm && !(llm = cli_load_model(cmd, llm_arg, tok_arg, "LLM"))))
        goto done;
    if (llm && (uhlm_model_config(slm)->vocab_size != uhlm_model_config(llm)->vocab_size ||
        uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(slm)) != uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)))) {
        fprintf(stderr,
                "uhlm run: vocabulary mismatch: the SLM %s has %d tokens, the LLM %s has %d%s; "
                "both models must share one vocabulary\n",
                uhlm_model_path(slm), uhlm_model_config(slm)->vocab_size, uhlm_model_path(llm), uhlm_model_config(llm)->vocab_size,
                uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size ? " but different pieces" : "");
        goto done;
    }
    if (chat && cli_check_chat(cmd, slm) != 0) goto done;
    if (cli_check_payload(cmd, &dp.payload, slm) != 0) {
        rc = 2;
        goto done;
    }
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)threads;
    cp.simd = simd;
    cp.n_ctx = (int)n_ctx_arg;
    /* llm mode runs the SLM only while a remote server is unreachable, but its context always
     * sets the common context limit, so every mode stops at the same length */
    if (!(slm_ctx = uhlm_ctx_new(slm, &cp, &err))) {
        fprintf(stderr, "uhlm run: SLM: %s\n", err.msg);
        goto done;
    }
    if (mode != UHLM_MODE_SLM && server) {
        if (!(ver = cli_remote_verifier(&remote_opts, slm, NULL, connect_to, read_to, seed,
                                        remote_log, &err))) {
            fprintf(stderr, "uhlm run: %s\n", err.msg);
            goto done;
        }
    } else if (mode != UHLM_MODE_SLM && !(ver = uhlm_verifier_inproc_new(llm, &cp, &err))) {
        fprintf(stderr, "uhlm run: LLM: %s\n", err.msg);
        goto done;
    }
    if (shadow && mode != UHLM_MODE_LLM && !(shadow_ctx = uhlm_ctx_new(llm, &cp, &err))) {
        fprintf(stderr, "uhlm run: shadow LLM: %s\n", err.msg);
        goto done;
    }
    if (!(dev = uhlm_device_new(slm_ctx, 0, ver, shadow_ctx, &dp, &err))) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        goto done;
    }
    int n_ctx = uhlm_device_n_ctx(dev);
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(slm);
    int maxp = uhlm_tokenizer_max_piece_len(tok) + 16;
    ids = malloc(sizeof(int) * ((size_t)n_ctx + 1));
    piece = malloc((size_t)maxp);
    if (!ids || !piece || cli_text_init(&text, !json) != 0 || (events && !(rs.events = cJSON_CreateArray()))) {
        fprintf(stderr, "uhlm run: out of memory\n");
        goto done;
    }
    int np = chat ? uhlm_chat_tokenize(slm, system, prompt, ids, n_ctx + 1, &err)
                  : uhlm_tokenize(tok, prompt, strlen(prompt), uhlm_tokenizer_add_bos(tok), 0, ids,
                                  n_ctx + 1, &err);
    if (np < 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        goto done;
    }
    if (np >= n_ctx) {
        fprintf(stderr, "uhlm run: prompt is %d tokens, the context holds %d\n", np, n_ctx);
        goto done;
    }
    uhlm_device_set_callback(dev, on_token, &rs);
    if (uhlm_device_start(dev, ids, np, seed, &err) != 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        goto done;
    }
    uhlm_detok dt;
    uhlm_detok_init(&dt, tok);
    for (int i = 0; i < np; i++) {
        /* the prompt's text is part of the output, as `uhlm generate` prints it (not a chat
         * prompt's template) */
        size_t k = uhlm_detok_push(&dt, ids[i], piece, (size_t)maxp);
        if (!json && !chat) fwrite(piece, 1, k, stdout);
    }
    if (!json) fflush(stdout);
    int t, r;
    while ((r = uhlm_device_step(dev, &t, &err)) == 1) {
        if (uhlm_tokenizer_is_eog(tok, t)) continue;
        size_t k = uhlm_detok_push(&dt, t, piece, (size_t)maxp);
        if (cli_text_add(&text, piece, k) != 0) {
            fprintf(stderr, "uhlm run: out of memory\n");
            goto done;
        }
    }
    if (r < 0) {
        if (!json) fputc('\n', stdout);
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        goto done;
    }
    size_t k = uhlm_detok_flush(&dt, piece, (size_t)maxp);
    if (cli_text_end(&text, piece, k) != 0) {
        fprintf(stderr, "uhlm run: out of memory\n");
        goto done;
    }
    char line[1024];
    uhlm_device_stats_line(dev, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    uhlm_remote_stats rst;
    int remote = ver && uhlm_remote_get_stats(ver, &rst) == 0;
    if (remote)
        fprintf(stderr,
                "uhlm run: server %s: %d unverified, %llu connects (%llu reconnects, %llu failed), "
                "%llu lost, %llu resyncs, %llu requests, mean RTT %.2f ms\n",
                server, uhlm_device_get_stats(dev)->unverified, (unsigned long long)rst.connects,
                (unsigned long long)rst.reconnects, (unsigned long long)rst.connect_failures,
                (unsigned long long)rst.losses, (unsigned long long)rst.resyncs,
                (unsigned long long)rst.requests,
                rst.requests ? 1e3 * rst.rtt_s / (double)rst.requests : 0.0);
    if (json) {
        uhlm_device_report rep;
        uhlm_device_get_report(dev, &rep);
        cJSON *o = cli_device_report_json(&rep);
        if (!o) {
            fprintf(stderr, "uhlm run: out of memory\n");
            goto done;
        }
        cJSON_AddStringToObject(o, "prompt", prompt);
        if (chat) {
            cJSON_AddStringToObject(o, "chat_template", uhlm_chat_model_template(slm).name);
            if (system) cJSON_AddStringToObject(o, "system", system);
        }
        cJSON *ro = remote ? cJSON_AddObjectToObject(o, "remote") : NULL;
        if (ro) {
            cJSON_AddStringToObject(ro, "server", server);
            cJSON_AddNumberToObject(ro, "connects", (double)rst.connects);
            cJSON_AddNumberToObject(ro, "reconnects", (double)rst.reconnects);
            cJSON_AddNumberToObject(ro, "connect_failures", (double)rst.connect_failures);
            cJSON_AddNumberToObject(ro, "losses", (double)rst.losses);
            cJSON_AddNumberToObject(ro, "opens", (double)rst.opens);
            cJSON_AddNumberToObject(ro, "resyncs", (double)rst.resyncs);
            cJSON_AddNumberToObject(ro, "resync_tokens", (double)rst.resync_tokens);
            cJSON_AddNumberToObject(ro, "unavailable_calls", (double)rst.unavailable);
            cJSON_AddNumberToObject(ro, "requests", (double)rst.requests);
            cJSON_AddNumberToObject(ro, "bytes_sent", (double)rst.bytes_sent);
            cJSON_AddNumberToObject(ro, "bytes_received", (double)rst.bytes_received);
            cJSON_AddNumberToObject(ro, "rtt_seconds", rst.rtt_s);
        }
        cJSON_AddStringToObject(o, "text", text.buf);
        int n_all;
        const int *all = uhlm_device_tokens(dev, &n_all);
        cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
        for (int i = np; arr && i < n_all; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(all[i]));
        if (rs.events) {
            cJSON_AddItemToObject(o, "events", rs.events);
            rs.events = NULL;
        }
        if (cli_print_json(cmd, o) != 0) goto done;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uhlm run: error writing output\n");
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(rs.events);
    free(ids);
    free(piece);
    cli_text_free(&text);
    uhlm_device_free(dev);
    uhlm_verifier_free(ver);
    uhlm_ctx_free(shadow_ctx);
    uhlm_ctx_free(slm_ctx);
    uhlm_model_free(slm);
    uhlm_model_free(llm);
    cli_texts_free(&prompts);
    return rc;
}
