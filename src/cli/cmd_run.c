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
#include "cli/cli_remote.h"
#include "uhlm/calib.h"
#include "uhlm/chat.h"
#include "uhlm/hybrid.h"
#include "uhlm/model.h"
#include "uhlm/remote.h"
#include "uhlm/tokenizer.h"
#include "uhlm/wire.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: uhlm run [-m SLM] [--llm LLM] [-z TOKENIZER] [-p PROMPT] [-n N]\n"
        "                [--chat [--system TEXT]]\n"
        "                [--mode slm|llm|hlm|rand|uhlm] [--uth U] [--skip-prob P]\n"
        "                [--payload f32|f16|topk:K[:8|16]] [--snr DB] [--bandwidth HZ]\n"
        "                [--down-snr DB] [--down-bandwidth HZ] [--latency S]\n"
        "                [--fading none|rayleigh] [--temp T] [--top-k K] [--top-p P]\n"
        "                [--uncertainty perturb|entropy|maxprob|margin] [--samples M]\n"
        "                [--theta-max T] [--seed S] [--shadow] [--json] [--events]\n"
        "                [-t THREADS] [--simd LEVEL] [--channel accounted|shaped]\n"
        "                [--max-input-mb MB]\n"
        "                [--server HOST:PORT [--auth-token-file F] [--connect-timeout S]\n"
        "                 [--read-timeout S] [--require-server]]\n\n"
        "Hybrid generation: a small model (SLM, the device) drafts every token; depending on\n"
        "the mode, a large model (LLM, the server, here in the same process) verifies it by\n"
        "speculative sampling. Link time comes from an accounted wireless channel model.\n\n"
        "  -m SLM           device model (default %s)\n"
        "  --llm LLM        server model (default %s)\n"
        "  -z TOKENIZER     tokenizer for llama2.c models (default %s); both models must\n"
        "                   share one vocabulary\n"
        "  -p PROMPT        prompt text (default: empty, generation starts from BOS)\n"
        "  --chat           wrap PROMPT as one user turn in the SLM's chat template (chatml,\n"
        "                   llama2, llama3, zephyr) and print only the answer\n"
        "  --system TEXT    with --chat: a system message before the user turn\n"
        "  -n N             tokens to generate (default 256; stops early at an end-of-\n"
        "                   generation token or the context)\n"
        "  --mode MODE      slm: SLM alone; llm: LLM alone; hlm: verify every token;\n"
        "                   rand: skip with probability --skip-prob; uhlm: skip when the\n"
        "                   uncertainty u <= --uth (default uhlm)\n"
        "  --uth U          uhlm threshold (default 0.2; < 0 verifies all, >= 1 skips all)\n"
        "  --calib F --risk R   u_th from `uhlm calibrate` output F instead of --uth;\n"
        "                   R = averse (-b/a), prone ((delta-b)/a), budget (the stored risk\n"
        "                   budget) or budget:X (largest u_th whose 95%% upper limit of\n"
        "                   rejected-and-skipped tokens is <= X)\n"
        "  --skip-prob P    rand skip probability (default 0.5)\n"
        "  --payload ENC    uplink encoding of x: f32, f16, topk:K (8-bit), topk:K:16\n"
        "                   (default f32); the draft is sampled from the decoded x\n"
        "  --snr DB         mean SNR of both links in dB (default %g)\n"
        "  --bandwidth HZ   bandwidth of both links in Hz (default %g)\n"
        "  --down-snr DB, --down-bandwidth HZ   downlink only (default: as the uplink)\n"
        "  --latency S      fixed latency per message, both directions (default 0)\n"
        "  --fading F       none or rayleigh (block fading per message; default none)\n"
        "  --channel C      accounted: link time goes to a virtual clock (default); shaped:\n"
        "                   the device also really waits each message's link time\n"
        "  --temp T         temperature for both models, 0 = greedy (default 1.0)\n"
        "  --top-k K        keep the K most likely tokens, 0 = off (default 0)\n"
        "  --top-p P        nucleus sampling mass, 1 = off (default 1.0)\n"
        "  --uncertainty U  perturb (temperature perturbation, default), entropy, maxprob,\n"
        "                   margin\n"
        "  --samples M      perturbation samples (default %d)\n"
        "  --theta-max T    largest perturbation temperature (default %g)\n"
        "  --seed S         random seed (default 42); with a seed, the output is fixed for\n"
        "                   every mode and thread count\n"
        "  --shadow         also evaluate skipped tokens with the LLM (untimed) to report the\n"
        "                   true skip rate and would-be rejections\n"
        "  --json           print one JSON object (text, tokens, full stats) instead of text\n"
        "  --events         with --json: add a per-token record array\n"
        "  -t THREADS       threads per model (default: all CPUs)\n"
        "  --simd LEVEL     auto|scalar|avx2|avx512 (default auto)\n"
        "  --server H:P     verify on a `uhlm serve` server instead of in this process (the\n"
        "                   LLM is then not loaded here, except for --shadow). If the server\n"
        "                   is unreachable or dies, generation goes on with the SLM alone\n"
        "                   (tokens counted as unverified), reconnects with backoff and\n"
        "                   resynchronises (in every mode, llm included)\n"
        "  --require-server     fail (exit 1) instead of going on with the SLM alone when the\n"
        "                   server cannot verify (unreachable, lost, context full, payload\n"
        "                   refused)\n"
        "  --auth-token-file F  the server's shared auth token (first line of F)\n"
        "  --connect-timeout S  per connection attempt (default 3)\n"
        "  --read-timeout S     per reply, LLM time included (default 30)\n"
        "  --max-input-mb MB    largest --calib file read (default %d MiB)\n"
        "\nText goes to stdout; a one-line summary of the stats goes to stderr.\n",
        UHLM_DEFAULT_SLM, UHLM_DEFAULT_LLM, UHLM_DEFAULT_TOKENIZER, UHLM_CHANNEL_DEFAULT_SNR_DB,
        UHLM_CHANNEL_DEFAULT_BANDWIDTH, UHLM_UNC_DEFAULT_SAMPLES, UHLM_UNC_DEFAULT_THETA_MAX,
        UHLM_INPUT_MAX_MB);
}

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
    const char *prompt = "", *system = NULL;
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
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--events")) {
            events = 1;
        } else if (!strcmp(a, "--shadow")) {
            shadow = 1;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--system")) {
            if (!(system = cli_need_arg(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--require-server")) {
            require_server = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--llm") || !strcmp(a, "-z") ||
                   !strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "--mode") ||
                   !strcmp(a, "--uth") || !strcmp(a, "--skip-prob") || !strcmp(a, "--payload") ||
                   !strcmp(a, "--snr") || !strcmp(a, "--bandwidth") || !strcmp(a, "--down-snr") ||
                   !strcmp(a, "--down-bandwidth") || !strcmp(a, "--latency") ||
                   !strcmp(a, "--fading") || !strcmp(a, "--temp") || !strcmp(a, "--top-k") ||
                   !strcmp(a, "--top-p") || !strcmp(a, "--seed") || !strcmp(a, "-t") ||
                   !strcmp(a, "--uncertainty") || !strcmp(a, "--samples") ||
                   !strcmp(a, "--theta-max") || !strcmp(a, "--simd") || !strcmp(a, "--server") ||
                   !strcmp(a, "--auth-token-file") || !strcmp(a, "--connect-timeout") ||
                   !strcmp(a, "--read-timeout") || !strcmp(a, "--channel") ||
                   !strcmp(a, "--calib") || !strcmp(a, "--risk") ||
                   !strcmp(a, "--max-input-mb")) {
            if (!(v = cli_need_arg(cmd, argc, argv, &i))) return 2;
            int bad = 0;
            if (!strcmp(a, "-m"))
                slm_arg = v;
            else if (!strcmp(a, "--llm"))
                llm_arg = v;
            else if (!strcmp(a, "-z"))
                tok_arg = v;
            else if (!strcmp(a, "-p"))
                prompt = v;
            else if (!strcmp(a, "-n"))
                bad = cli_parse_int(cmd, a, v, 0, 1 << 24, &n_gen);
            else if (!strcmp(a, "--uth"))
                bad = cli_parse_float(cmd, a, v, -1e9, 1e9, &dp.policy.u_th);
            else if (!strcmp(a, "--skip-prob"))
                bad = cli_parse_float(cmd, a, v, 0.0, 1.0, &dp.policy.skip_prob);
            else if (!strcmp(a, "--snr"))
                bad = cli_parse_float(cmd, a, v, -200, 200, &snr);
            else if (!strcmp(a, "--down-snr"))
                bad = cli_parse_float(cmd, a, v, -200, 200, &dsnr);
            else if (!strcmp(a, "--bandwidth"))
                bad = cli_parse_float(cmd, a, v, 1e-3, 1e15, &bw);
            else if (!strcmp(a, "--down-bandwidth"))
                bad = cli_parse_float(cmd, a, v, 1e-3, 1e15, &dbw);
            else if (!strcmp(a, "--latency"))
                bad = cli_parse_float(cmd, a, v, 0.0, 1e6, &lat);
            else if (!strcmp(a, "--temp"))
                bad = cli_parse_float(cmd, a, v, 0, 1e6, &temp);
            else if (!strcmp(a, "--top-k"))
                bad = cli_parse_int(cmd, a, v, 0, 1 << 24, &top_k);
            else if (!strcmp(a, "--top-p"))
                bad = cli_parse_float(cmd, a, v, 1e-9, 1.0, &top_p);
            else if (!strcmp(a, "--seed"))
                bad = cli_parse_u64(cmd, a, v, &seed);
            else if (!strcmp(a, "-t"))
                bad = cli_parse_int(cmd, a, v, 0, 1024, &threads);
            else if (!strcmp(a, "--samples"))
                bad = cli_parse_int(cmd, a, v, 1, 1000000, &samples);
            else if (!strcmp(a, "--theta-max"))
                bad = cli_parse_float(cmd, a, v, 1e-6, 1e6, &theta_max);
            else if (!strcmp(a, "--server"))
                server = v;
            else if (!strcmp(a, "--auth-token-file"))
                token_file = v;
            else if (!strcmp(a, "--connect-timeout"))
                bad = cli_parse_float(cmd, a, v, 1e-3, 3600, &connect_to);
            else if (!strcmp(a, "--read-timeout"))
                bad = cli_parse_float(cmd, a, v, 1e-3, 86400, &read_to);
            else if (!strcmp(a, "--calib"))
                calib_path = v;
            else if (!strcmp(a, "--risk"))
                risk = v;
            else if (!strcmp(a, "--max-input-mb"))
                bad = cli_parse_int(cmd, a, v, 1, 1 << 20, &max_in_mb);
            else if (!strcmp(a, "--channel")) {
                if ((bad = uhlm_channel_mode_parse(v, &dp.channel.mode) != 0))
                    fprintf(stderr, "uhlm run: unknown channel '%s' (accounted, shaped)\n", v);
            } else if (!strcmp(a, "--mode")) {
                if ((bad = uhlm_mode_parse(v, &dp.policy.mode) != 0))
                    fprintf(stderr, "uhlm run: unknown mode '%s' (slm, llm, hlm, rand, uhlm)\n", v);
            } else if (!strcmp(a, "--payload")) {
                if ((bad = uhlm_payload_parse(v, &dp.payload, &err) != 0))
                    fprintf(stderr, "uhlm run: %s\n", err.msg);
            } else if (!strcmp(a, "--fading")) {
                if ((bad = uhlm_fading_parse(v, &dp.channel.fading) != 0))
                    fprintf(stderr, "uhlm run: unknown fading model '%s' (none, rayleigh)\n", v);
            } else if (!strcmp(a, "--uncertainty")) {
                if ((bad = uhlm_unc_method_parse(v, &dp.unc.method) != 0))
                    fprintf(stderr,
                            "uhlm run: unknown uncertainty '%s' (perturb, entropy, maxprob, "
                            "margin)\n",
                            v);
            } else if (uhlm_simd_from_name(v, &simd) != 0) {
                fprintf(stderr, "uhlm run: unknown --simd level '%s'\n", v);
                bad = 1;
            }
            if (bad) return 2;
        } else {
            fprintf(stderr, "uhlm run: unknown option '%s' (see 'uhlm run --help')\n", a);
            return 2;
        }
    }
    if (events && !json) {
        fprintf(stderr, "uhlm run: --events needs --json\n");
        return 2;
    }
    if (system && !chat) {
        fprintf(stderr, "uhlm run: --system needs --chat\n");
        return 2;
    }
    if ((calib_path != NULL) != (risk != NULL) ||
        (risk && uhlm_calib_risk_parse(risk, NULL, NULL, NULL) != 0)) {
        fprintf(stderr, "uhlm run: --calib FILE and --risk averse|prone|budget|budget:R (R in "
                        "[0, 1]) go together\n");
        return 2;
    }
    if (calib_path && uhlm_calib_load_threshold_max(calib_path, risk, (uint64_t)max_in_mb << 20,
                                                   &dp.policy.u_th, &err) != 0) {
        fprintf(stderr, "uhlm run: %s\n", err.msg);
        return 1;
    }
    dp.n_gen = (int)n_gen;
    dp.sampling = (uhlm_sampling){(float)temp, (int)top_k, (float)top_p};
    dp.unc.samples = (int)samples;
    dp.unc.theta_max = theta_max;
    dp.channel.up = (uhlm_link){bw, snr, lat};
    dp.channel.down = (uhlm_link){isnan(dbw) ? bw : dbw, isnan(dsnr) ? snr : dsnr, lat};
    cli_remote remote_opts;
    int remote_rc = cli_remote_setup("run", server, token_file, &remote_opts);
    if (remote_rc != 0) return remote_rc;
    if (require_server && !server) {
        fprintf(stderr, "uhlm run: --require-server needs --server\n");
        return 2;
    }
    remote_opts.require = require_server;

    int rc = 1;
    uhlm_model *slm = NULL, *llm = NULL;
    uhlm_ctx *slm_ctx = NULL, *shadow_ctx = NULL;
    uhlm_verifier *ver = NULL;
    uhlm_device *dev = NULL;
    int *ids = NULL;
    char *piece = NULL;
    cli_text text = {NULL, 0, 0, 0};
    run_state rs = {NULL};
    uhlm_mode mode = dp.policy.mode;

    /* with a server the LLM lives there; it is loaded here only to shadow skipped tokens */
    int need_llm = !server || (shadow && mode != UHLM_MODE_LLM);
    if (!(slm = cli_load_model(cmd, slm_arg, tok_arg, "SLM")) ||
        (need_llm && !(llm = cli_load_model(cmd, llm_arg, tok_arg, "LLM"))))
        goto done;
    if (llm && (slm->cfg.vocab_size != llm->cfg.vocab_size ||
        uhlm_tokenizer_fingerprint(slm->tok) != uhlm_tokenizer_fingerprint(llm->tok))) {
        fprintf(stderr,
                "uhlm run: vocabulary mismatch: the SLM %s has %d tokens, the LLM %s has %d%s; "
                "both models must share one vocabulary\n",
                slm->path, slm->cfg.vocab_size, llm->path, llm->cfg.vocab_size,
                slm->cfg.vocab_size == llm->cfg.vocab_size ? " but different pieces" : "");
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
    const uhlm_tokenizer *tok = slm->tok;
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
        char *s = uhlm_device_stats_json(dev);
        cJSON *o = s ? cJSON_Parse(s) : NULL;
        free(s);
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
    return rc;
}
