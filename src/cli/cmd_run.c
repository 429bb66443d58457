/* cmd_run.c: `uhlm run`, hybrid SLM+LLM generation (the five modes of DESIGN §2.4) over the
 * in-process verifier, or over a `uhlm serve` server with --server (the remote verifier,
 * uhlm/remote.h: same device loop, same output for a seed), with an accounted or shaped
 * channel. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/api_http.h"
#include "cli/cli.h"
#include "cli/cli_signal.h"
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

/* Every option of `uhlm run`, as parsed (dp holds the device parameters the table fills
 * directly; the rest are folded into it by run_check_options). */
typedef struct {
    const char *slm_arg, *llm_arg, *tok_arg, *system, *prompt;
    int chat, json, events, shadow, require_server;
    int no_prompt; /* no -p/-f given */
    long threads, n_gen, top_k, samples, n_ctx_arg, max_in_mb;
    double temp, top_p, theta_max, snr, bw, lat, dsnr, dbw, connect_to, read_to;
    double fallback_after; /* --fallback-after */
    uint64_t seed;
    const char *server, *token_file, *calib_path, *risk; /* --calib F --risk averse|prone|budget[:R] */
    uhlm_simd simd;
    uhlm_numerics numerics;
    uhlm_load_mode load;
    uhlm_device_params dp;
    cli_remote remote;
    const char *listen, *port_file; /* --listen: the OpenAI API instead of one prompt */
    long max_queue;
} run_opts;

/* What one run holds; run_free releases all of it. */
typedef struct {
    uhlm_model *slm, *llm;
    uhlm_ctx *slm_ctx, *shadow_ctx;
    uhlm_verifier *ver;
    uhlm_device *dev;
    int *ids;
    char *piece;
    int maxp, np;
    cli_text text;
    run_state rs;
    int interrupted; /* Ctrl-C stopped the device: the report says so and the exit status is 130 */
} run_session;

static void run_free(run_session *s) {
    cJSON_Delete(s->rs.events);
    free(s->ids);
    free(s->piece);
    cli_text_free(&s->text);
    uhlm_device_free(s->dev);
    uhlm_verifier_free(s->ver);
    uhlm_ctx_free(s->shadow_ctx);
    uhlm_ctx_free(s->slm_ctx);
    uhlm_model_free(s->slm);
    uhlm_model_free(s->llm);
}

/* Checks the options that go together, reads --calib, and fills o->dp. Returns 0 or the exit
 * status after the message. */
static int run_check_options(run_opts *o) {
    uhlm_error err = {{0}};
    if (o->events && !o->json) {
        fprintf(stderr, "uhlm run: --events needs --json\n");
        return 2;
    }
    if (o->system && !o->chat) {
        fprintf(stderr, "uhlm run: --system needs --chat\n");
        return 2;
    }
    if ((o->calib_path != NULL) != (o->risk != NULL)) {
        fprintf(stderr, "uhlm run: --calib FILE and --risk averse|prone|budget|budget:R (R in "
                        "[0, 1]) go together\n");
        return 2;
    }
    if (o->calib_path &&
        uhlm_calib_load_threshold_max(o->calib_path, o->risk, (uint64_t)o->max_in_mb << 20,
                                      &o->dp.policy.u_th, &err) != 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    uhlm_device_params *dp = &o->dp;
    dp->n_gen = (int)o->n_gen;
    dp->sampling = (uhlm_sampling){(float)o->temp, (int)o->top_k, (float)o->top_p};
    dp->unc.samples = (int)o->samples;
    dp->unc.theta_max = o->theta_max;
    dp->channel.up = (uhlm_link){o->bw, o->snr, o->lat};
    dp->channel.down = (uhlm_link){isnan(o->dbw) ? o->bw : o->dbw,
                                   isnan(o->dsnr) ? o->snr : o->dsnr, o->lat};
    int rc = cli_remote_setup("run", o->server, o->token_file, &o->remote);
    if (rc != 0) return rc;
    if (o->require_server && !o->server) {
        fprintf(stderr, "uhlm run: --require-server needs --server\n");
        return 2;
    }
    /* llm mode means "the LLM's text": with a server, SLM text in its place is an error */
    o->remote.require = o->require_server || (o->server && o->dp.policy.mode == UHLM_MODE_LLM);
    o->remote.fallback_after_s = o->fallback_after;
    return 0;
}

/* Loads the models (the LLM only where it runs here) and checks they share one vocabulary. */
static int run_load_models(const run_opts *o, run_session *s) {
    const char *cmd = "run";
    uhlm_mode mode = o->dp.policy.mode;
    /* with a server the LLM lives there; it is loaded here only to shadow skipped tokens */
    int need_llm = !o->server || (o->shadow && mode != UHLM_MODE_LLM);
    if (!(s->slm = cli_load_model(cmd, o->slm_arg, o->tok_arg, o->load, "SLM")) ||
        (need_llm && !(s->llm = cli_load_model(cmd, o->llm_arg, o->tok_arg, o->load, "LLM"))))
        return 1;
    const uhlm_model *slm = s->slm, *llm = s->llm;
    if (llm && (uhlm_model_config(slm)->vocab_size != uhlm_model_config(llm)->vocab_size ||
        uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(slm)) != uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(llm)))) {
        fprintf(stderr,
                "uhlm run: vocabulary mismatch: the SLM %s has %d tokens, the LLM %s has %d%s; "
                "both models must share one vocabulary\n",
                uhlm_model_path(slm), uhlm_model_config(slm)->vocab_size, uhlm_model_path(llm), uhlm_model_config(llm)->vocab_size,
                uhlm_model_config(slm)->vocab_size == uhlm_model_config(llm)->vocab_size ? " but different pieces" : "");
        cli_pair_hint(cmd, o->slm_arg, o->llm_arg);
        return 1;
    }
    return 0;
}

/* Opens the SLM's context, the verifier (in process or remote), the shadow LLM and the device. */
static int run_open_device(run_opts *o, run_session *s) {
    uhlm_error err = {{0}};
    uhlm_mode mode = o->dp.policy.mode;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_threads = (int)o->threads;
    cp.simd = o->simd;
    cp.numerics = o->numerics;
    cp.n_ctx = (int)o->n_ctx_arg;
    /* llm mode runs the SLM only while a remote server is unreachable, but its context always
     * sets the common context limit, so every mode stops at the same length */
    if (!(s->slm_ctx = uhlm_ctx_new(s->slm, &cp, &err))) {
        fprintf(stderr, "uhlm run: SLM: %s\n", err.msg);
        return 1;
    }
    if (mode != UHLM_MODE_SLM && o->server) {
        if (!(s->ver = cli_remote_verifier(&o->remote, s->slm, NULL, o->connect_to, o->read_to,
                                           o->seed, remote_log, &err))) {
            fprintf(stderr, "uhlm run: %s\n", err.msg);
            return 1;
        }
    } else if (mode != UHLM_MODE_SLM && !(s->ver = uhlm_verifier_inproc_new(s->llm, &cp, &err))) {
        fprintf(stderr, "uhlm run: LLM: %s\n", err.msg);
        return 1;
    }
    if (o->shadow && mode != UHLM_MODE_LLM && !(s->shadow_ctx = uhlm_ctx_new(s->llm, &cp, &err))) {
        fprintf(stderr, "uhlm run: shadow LLM: %s\n", err.msg);
        return 1;
    }
    if (!(s->dev = uhlm_device_new(s->slm_ctx, 0, s->ver, s->shadow_ctx, &o->dp, &err))) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Tokenizes the prompt (as a chat turn with --chat) and starts the device on it. */
static int run_start(const run_opts *o, run_session *s) {
    uhlm_error err = {{0}};
    int n_ctx = uhlm_device_n_ctx(s->dev);
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(s->slm);
    s->maxp = uhlm_tokenizer_max_piece_len(tok) + 16;
    s->ids = malloc(sizeof(int) * ((size_t)n_ctx + 1));
    s->piece = malloc((size_t)s->maxp);
    if (!s->ids || !s->piece || cli_text_init(&s->text, !o->json) != 0 ||
        (o->events && !(s->rs.events = cJSON_CreateArray()))) {
        fprintf(stderr, "uhlm run: out of memory\n");
        return 1;
    }
    const char *prompt = o->prompt;
    int np = o->chat ? uhlm_chat_tokenize(s->slm, o->system, prompt, s->ids, n_ctx + 1, &err)
                     : uhlm_tokenize(tok, prompt, strlen(prompt), uhlm_tokenizer_add_bos(tok), 0,
                                     s->ids, n_ctx + 1, &err);
    if (np < 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    if (np >= n_ctx) {
        fprintf(stderr, "uhlm run: prompt is %d tokens, the context holds %d\n", np, n_ctx);
        return 1;
    }
    s->np = np;
    uhlm_device_set_callback(s->dev, on_token, &s->rs);
    if (uhlm_device_start(s->dev, s->ids, np, o->seed, &err) != 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Steps the device to the end, echoing the text as it comes unless --json. */
static int run_generate(const run_opts *o, run_session *s) {
    uhlm_error err = {{0}};
    const uhlm_tokenizer *tok = uhlm_model_tokenizer(s->slm);
    size_t maxp = (size_t)s->maxp;
    uhlm_detok dt;
    uhlm_detok_init(&dt, tok);
    for (int i = 0; i < s->np; i++) {
        /* the prompt's text is part of the output, as `uhlm generate` prints it (not a chat
         * prompt's template) */
        size_t k = uhlm_detok_push(&dt, s->ids[i], s->piece, maxp);
        if (!o->json && !o->chat) fwrite(s->piece, 1, k, stdout);
    }
    if (!o->json) fflush(stdout);
    int t, r;
    if (cli_sigint_install("run") != 0) return 1;
    uhlm_device_set_cancel(s->dev, cli_sigint_cancel, NULL);
    while ((r = uhlm_device_step(s->dev, &t, &err)) == 1) {
        if (uhlm_tokenizer_is_eog(tok, t)) continue;
        size_t k = uhlm_detok_push(&dt, t, s->piece, maxp);
        if (cli_text_add(&s->text, s->piece, k) != 0) {
            fprintf(stderr, "uhlm run: out of memory\n");
            return 1;
        }
    }
    cli_sigint_restore();
    s->interrupted = r == UHLM_CANCELLED;
    if (r < 0 && !s->interrupted) {
        if (!o->json) fputc('\n', stdout);
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    size_t k = uhlm_detok_flush(&dt, s->piece, maxp);
    if (cli_text_end(&s->text, s->piece, k) != 0) {
        fprintf(stderr, "uhlm run: out of memory\n");
        return 1;
    }
    return 0;
}

static void add_remote_json(cJSON *o, const char *server, const uhlm_remote_stats *rst) {
    cJSON *ro = cJSON_AddObjectToObject(o, "remote");
    if (!ro) return;
    cJSON_AddStringToObject(ro, "server", server);
    cJSON_AddNumberToObject(ro, "connects", (double)rst->connects);
    cJSON_AddNumberToObject(ro, "reconnects", (double)rst->reconnects);
    cJSON_AddNumberToObject(ro, "connect_failures", (double)rst->connect_failures);
    cJSON_AddNumberToObject(ro, "losses", (double)rst->losses);
    cJSON_AddNumberToObject(ro, "opens", (double)rst->opens);
    cJSON_AddNumberToObject(ro, "resyncs", (double)rst->resyncs);
    cJSON_AddNumberToObject(ro, "resync_tokens", (double)rst->resync_tokens);
    cJSON_AddNumberToObject(ro, "unavailable_calls", (double)rst->unavailable);
    cJSON_AddNumberToObject(ro, "requests", (double)rst->requests);
    cJSON_AddNumberToObject(ro, "bytes_sent", (double)rst->bytes_sent);
    cJSON_AddNumberToObject(ro, "bytes_received", (double)rst->bytes_received);
    cJSON_AddNumberToObject(ro, "rtt_seconds", rst->rtt_s);
}

/* The --json document: the device's report, the prompt, the remote link's counters (rst, or
 * NULL when verification was not remote), the text, the tokens and the events. */
static int run_print_json(const run_opts *o, run_session *s, const uhlm_remote_stats *rst) {
    uhlm_device_report rep;
    uhlm_device_get_report(s->dev, &rep);
    cJSON *j = cli_device_report_json(&rep);
    if (!j) {
        fprintf(stderr, "uhlm run: out of memory\n");
        return 1;
    }
    cJSON_AddStringToObject(j, "prompt", o->prompt);
    if (o->chat) {
        cJSON_AddStringToObject(j, "chat_template", uhlm_chat_model_template(s->slm).name);
        if (o->system) cJSON_AddStringToObject(j, "system", o->system);
    }
    if (rst) add_remote_json(j, o->server, rst);
    /* only when true, so an uninterrupted run's document is unchanged */
    if (s->interrupted) cJSON_AddBoolToObject(j, "interrupted", 1);
    cJSON_AddStringToObject(j, "text", s->text.buf);
    int n_all;
    const int *all = uhlm_device_tokens(s->dev, &n_all);
    cJSON *arr = cJSON_AddArrayToObject(j, "tokens");
    for (int i = s->np; arr && i < n_all; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(all[i]));
    if (s->rs.events) {
        cJSON_AddItemToObject(j, "events", s->rs.events);
        s->rs.events = NULL;
    }
    return cli_print_json("run", j) != 0 ? 1 : 0;
}

/* The summary on stderr (and the remote link's, with --server), then --json's document. */
static int run_report(const run_opts *o, run_session *s) {
    char line[1024];
    uhlm_device_stats_line(s->dev, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    uhlm_remote_stats rst;
    int remote = s->ver && uhlm_remote_get_stats(s->ver, &rst) == 0;
    if (remote)
        fprintf(stderr,
                "uhlm run: server %s: %d unverified, %llu connects (%llu reconnects, %llu failed), "
                "%llu lost, %llu resyncs, %llu requests, mean RTT %.2f ms\n",
                o->server, uhlm_device_get_stats(s->dev)->unverified, (unsigned long long)rst.connects,
                (unsigned long long)rst.reconnects, (unsigned long long)rst.connect_failures,
                (unsigned long long)rst.losses, (unsigned long long)rst.resyncs,
                (unsigned long long)rst.requests,
                rst.requests ? 1e3 * rst.rtt_s / (double)rst.requests : 0.0);
    if (s->interrupted)
        fprintf(stderr, "uhlm run: interrupted after %d tokens\n",
                uhlm_device_get_stats(s->dev)->generated);
    if (o->json && run_print_json(o, s, remote ? &rst : NULL) != 0) return 1;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "uhlm run: error writing output\n");
        return 1;
    }
    return 0;
}

/* --listen: serves the OpenAI API (api_http.h) on what run_open_device opened, until a signal. */
static int run_listen(const run_opts *o, run_session *s) {
    const char *path = uhlm_model_path(s->slm), *slash = strrchr(path, '/');
    api_backend b = {.slm = s->slm, .slm_ctx = s->slm_ctx, .ver = s->ver, .shadow = s->shadow_ctx,
                     .dp = o->dp, .seed = o->seed, .n_ctx = uhlm_device_n_ctx(s->dev),
                     .server = o->server, .model_name = slash ? slash + 1 : path};
    return api_serve(&b, o->listen, o->port_file, (int)o->max_queue);
}

/* Without -p/-f, an SLM with a chat template gets the default user turn, so an instruct pair
 * answers an instruction instead of continuing a bare BOS; other models start from BOS. */
static void run_default_prompt(run_opts *o, const uhlm_model *slm) {
    uhlm_chat_template t = uhlm_chat_model_template(slm);
    if (!o->no_prompt || (!o->chat && !uhlm_chat_supported(t.kind))) return;
    o->chat = 1;
    o->prompt = UHLM_DEFAULT_CHAT_PROMPT;
    if (uhlm_chat_supported(t.kind))
        fprintf(stderr, "uhlm run: no -p/-f: the user turn \"%s\" in the SLM's %s chat template "
                        "(-p TEXT for another, as plain text unless --chat)\n", o->prompt, t.name);
}

/* Runs the parsed options to the end: the exit status. */
static int run_main(run_opts *o) {
    int rc = run_check_options(o);
    if (rc != 0) return rc;
    run_session s = {.text = {NULL, 0, 0, 0}, .rs = {NULL}};
    if (o->listen) api_block_signals();
    rc = run_load_models(o, &s);
    if (rc == 0 && !o->listen) run_default_prompt(o, s.slm);
    if (rc == 0 && o->chat && cli_check_chat("run", s.slm) != 0) rc = 1;
    if (rc == 0 && cli_check_payload("run", &o->dp.payload, s.slm) != 0) rc = 2;
    if (rc == 0) rc = run_open_device(o, &s);
    if (rc == 0 && o->listen) {
        rc = run_listen(o, &s);
        run_free(&s);
        return rc;
    }
    if (rc == 0) rc = run_start(o, &s);
    if (rc == 0) rc = run_generate(o, &s);
    if (rc == 0) rc = run_report(o, &s);
    if (rc == 0 && s.interrupted) rc = CLI_EXIT_INTERRUPTED;
    run_free(&s);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {
        .slm_arg = UHLM_DEFAULT_SLM, .llm_arg = UHLM_DEFAULT_LLM,
        .n_gen = 256, .samples = UHLM_UNC_DEFAULT_SAMPLES, .max_in_mb = UHLM_INPUT_MAX_MB,
        .temp = 1.0, .top_p = 1.0, .theta_max = UHLM_UNC_DEFAULT_THETA_MAX,
        .snr = UHLM_CHANNEL_DEFAULT_SNR_DB, .bw = UHLM_CHANNEL_DEFAULT_BANDWIDTH,
        .dsnr = NAN, .dbw = NAN, .connect_to = 3.0, .read_to = 30.0, .seed = 42,
        .simd = UHLM_SIMD_AUTO, .dp = uhlm_device_default_params(), .max_queue = 8,
        .fallback_after = uhlm_remote_default_params().fallback_after_s,
    };
    cli_texts prompts = {.n = 0};
    uhlm_device_params *dp = &o.dp;
    const cli_arg args[] = {
        CLI_ARGS_PAIR(&o.slm_arg, &o.llm_arg, &o.tok_arg),
        {.id = CLI_PROMPT, .dst = &prompts,
         .def = "the user turn \"" UHLM_DEFAULT_CHAT_PROMPT "\" with a chat-template SLM, "
                "else empty: start from BOS"},
        CLI_ARG(CLI_FILE, &prompts),
        CLI_ARG(CLI_CHAT, &o.chat),
        CLI_ARG(CLI_SYSTEM, &o.system),
        CLI_ARG(CLI_N_PREDICT, &o.n_gen),
        CLI_ARG(CLI_CTX_SIZE, &o.n_ctx_arg),
        CLI_ARG(CLI_SEED, &o.seed),
        CLI_ARGS_SAMPLING(&o.temp, &o.top_k, &o.top_p),
        CLI_ARG(CLI_MODE, &dp->policy.mode),
        CLI_ARG(CLI_UTH, &dp->policy.u_th),
        CLI_ARG(CLI_SKIP_PROB, &dp->policy.skip_prob),
        CLI_ARG(CLI_CALIB, &o.calib_path),
        CLI_ARG(CLI_RISK, &o.risk),
        CLI_ARG(CLI_SHADOW, &o.shadow),
        CLI_ARGS_UNCERTAINTY(&dp->unc.method, &o.samples, &o.theta_max),
        CLI_ARG(CLI_PAYLOAD, &dp->payload),
        CLI_ARG(CLI_SNR, &o.snr),
        CLI_ARG(CLI_BANDWIDTH, &o.bw),
        CLI_ARG(CLI_DOWN_SNR, &o.dsnr),
        CLI_ARG(CLI_DOWN_BANDWIDTH, &o.dbw),
        CLI_ARG(CLI_LATENCY, &o.lat),
        CLI_ARG(CLI_FADING, &dp->channel.fading),
        CLI_ARG(CLI_CHANNEL, &dp->channel.mode),
        CLI_ARG(CLI_SERVER, &o.server),
        CLI_ARGS_REMOTE(&o.token_file, &o.connect_to, &o.read_to),
        CLI_ARGS_TLS_CLIENT(&o.remote),
        CLI_ARG(CLI_REQUIRE_SERVER, &o.require_server),
        CLI_ARG(CLI_FALLBACK_AFTER, &o.fallback_after),
        CLI_ARG(CLI_THREADS, &o.threads),
        CLI_ARG(CLI_SIMD, &o.simd), CLI_ARG(CLI_NUMERICS, &o.numerics), CLI_ARG(CLI_LOAD, &o.load),
        {.id = CLI_JSON, .dst = &o.json, .help = "print one JSON object (text, tokens, full stats) "
                                                 "instead of text"},
        CLI_ARG(CLI_EVENTS, &o.events),
        {.id = CLI_MAX_INPUT_MB, .dst = &o.max_in_mb, .help = "largest --calib file read, in MiB"},
        CLI_ARG(CLI_LISTEN, &o.listen),
        CLI_ARG(CLI_MAX_QUEUE, &o.max_queue),
        {.id = CLI_PORT_FILE, .dst = &o.port_file, .help = "with --listen: write the bound port "
                                                           "to F once listening"},
    };
    int prc = cli_parse(&run_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    o.prompt = cli_texts_last(&prompts, "");
    o.no_prompt = prompts.n == 0;
    int rc = prc != CLI_CONTINUE ? cli_exit_status(prc) : 0;
    if (rc == 0 && !o.listen && o.port_file) {
        fprintf(stderr, "uhlm run: --port-file needs --listen\n");
        rc = 2;
    }
    if (rc == 0 && o.listen && (prompts.n || o.chat || o.system || o.json || o.events)) {
        fprintf(stderr, "uhlm run: --listen takes its prompts over HTTP: -p/-f, --chat, --system, "
                        "--json and --events do not go with it\n");
        rc = 2;
    }
    if (rc == 0 && prc == CLI_CONTINUE) rc = run_main(&o);
    cli_texts_free(&prompts);
    return rc;
}
