/* cmd_bench.c: `uhlm bench` and its subcommands: the options, then a bench of bench/bench.h
 * (the only includer of that header). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bench/bench.h" /* bench/ is outside the include path, which is src/ */
#include "cli/cli.h"
#include "cli/options.h"
#include "uhlm/payload.h"
#include "uhlm/uncertainty.h"

/* --json and --jsonl into a format; def when neither is given. -1 for both (after a message). */
static int out_format(const char *cmd, int json, int jsonl, bench_format def, bench_format *f) {
    if (json && jsonl) {
        fprintf(stderr, "uhlm %s: give one of --json and --jsonl\n", cmd);
        return -1;
    }
    *f = json ? BENCH_JSON : jsonl ? BENCH_JSONL : def;
    return 0;
}

#define N_ARGS(a) (sizeof(a) / sizeof((a)[0]))
#define PATH_CAP 1024

static const cli_command uncertainty_cmd = {
    "bench uncertainty", NULL,
    "Times each uncertainty method against one SLM forward (one token, after a short\n"
    "prompt). One JSON line per vocabulary and method on stdout: method, vocab, M,\n"
    "ns_per_call, slm_forward_ns, ratio.",
    NULL, 0};

static int bench_uncertainty_cmd(int argc, char **argv) {
    const char *model = UHLM_DEFAULT_SLM, *tok = NULL;
    long samples = UHLM_UNC_DEFAULT_SAMPLES, reps = 2000, threads = 0;
    int json = 0, jsonl = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model, .help = "the SLM"},
        CLI_ARG(CLI_TOKENIZER, &tok),
        CLI_ARG(CLI_SAMPLES, &samples),
        {.id = CLI_REPS, .dst = &reps, .lo = 1, .hi = 1e8, .help = "calls timed per method"},
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        CLI_ARG(CLI_JSON, &json),
        {.id = CLI_JSONL, .dst = &jsonl, .help = "JSON Lines (the default)"},
    };
    int rc = cli_parse(&uncertainty_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    char mpath[PATH_CAP], tpath[PATH_CAP];
    cli_find_model_file(model, mpath, sizeof mpath);
    if (cli_check_default_model(uncertainty_cmd.name, NULL, model, mpath) != 0) return 1;
    bench_uncertainty_params p = {mpath,
                                  tok ? cli_find_model_file(tok, tpath, sizeof tpath) : NULL,
                                  samples, reps, threads, simd, BENCH_JSONL};
    if (out_format(uncertainty_cmd.name, json, jsonl, BENCH_JSONL, &p.format) != 0) return 2;
    return bench_uncertainty(&p);
}

static const cli_command serve_cmd = {
    "bench serve", NULL,
    "Aggregate VERIFY throughput of the verification server (`uhlm serve`, run in this\n"
    "process on a loopback port) with N concurrent devices, each a thread with its own\n"
    "connection doing OPEN then VERIFY in lock-step, with and without cross-device\n"
    "batching. Each device's context cycles through [ctx-min, ctx-max] (sessions of\n"
    "all ages), device i of N starting at the middle of the i-th N-th of it, so the mean\n"
    "context is the same for any N. One JSON object per run on stdout (JSON Lines).",
    NULL, 0};

static int bench_serve_cmd(int argc, char **argv) {
    const char *model = UHLM_DEFAULT_LLM, *tok = NULL;
    const char *devices = "1,2,4,8,16,32", *payload = "f32";
    double seconds = 2.0, temp = 1.0;
    long window = 1000, threads = 0, catchup = 0, ctx_min = 8, ctx_max = -1;
    int no_compare = 0, json = 0, jsonl = 0;
    uhlm_payload_spec enc; /* checked here; the bench parses payload again */
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model, .help = "server model (the LLM)"},
        CLI_ARG_TOKENIZER(&tok),
        CLI_ARG(CLI_DEVICES_LIST, &devices),
        CLI_ARG(CLI_SECONDS, &seconds),
        {.id = CLI_BATCH_WINDOW_US, .dst = &window, .help = "server batch window"},
        {.id = CLI_PAYLOAD, .dst = &enc, .raw = &payload},
        {.id = CLI_TEMP, .dst = &temp, .help = "session temperature; 0 = greedy VERIFY"},
        CLI_ARG(CLI_CATCHUP, &catchup),
        {.id = CLI_CTX_MIN, .dst = &ctx_min, .help = "context a device re-opens at"},
        CLI_ARG(CLI_CTX_MAX, &ctx_max),
        CLI_ARG(CLI_NO_COMPARE, &no_compare),
        {.id = CLI_THREADS, .dst = &threads, .help = "server model threads; 0 = all CPUs"},
        CLI_ARG(CLI_JSON, &json),
        {.id = CLI_JSONL, .dst = &jsonl, .help = "JSON Lines (the default)"},
    };
    int rc = cli_parse(&serve_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    int counts[32];
    const int nc = cli_parse_int_list(serve_cmd.name, "--devices", devices, 1, 256, counts, 32);
    if (nc < 0) return 2;
    char mpath[PATH_CAP], tpath[PATH_CAP];
    cli_find_model_file(model, mpath, sizeof mpath);
    if (cli_check_default_model(serve_cmd.name, NULL, model, mpath) != 0) return 1;
    bench_serve_params p = {mpath, cli_model_tokenizer_path(mpath, tok, tpath, sizeof tpath),
                            counts, nc, payload, seconds, temp, window, threads, catchup,
                            ctx_min, ctx_max, !no_compare, BENCH_JSONL};
    if (out_format(serve_cmd.name, json, jsonl, BENCH_JSONL, &p.format) != 0) return 2;
    return bench_serve(&p);
}

static const cli_command batch_cmd = {
    "bench batch", NULL,
    "One forward over S sequences (one token each, contexts spread over [ctx-min,\n"
    "ctx-max]) against S one-token forwards, at the same contexts: the engine-level\n"
    "ceiling of cross-device batching. One JSON object per sequence count on stdout\n"
    "(JSON Lines).",
    NULL, 0};

static int bench_batch_cmd(int argc, char **argv) {
    const char *model = UHLM_DEFAULT_LLM, *tok = NULL, *seqs = "1,2,4,8,16,32";
    long threads = 0, ctx_min = 8, ctx_max = -1, rounds = 5;
    int json = 0, jsonl = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    const cli_arg args[] = {
        CLI_ARG(CLI_MODEL, &model),
        CLI_ARG(CLI_TOKENIZER, &tok),
        CLI_ARG(CLI_SEQS, &seqs),
        CLI_ARG(CLI_CTX_MIN, &ctx_min),
        CLI_ARG(CLI_CTX_MAX, &ctx_max),
        CLI_ARG(CLI_ROUNDS, &rounds),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        CLI_ARG(CLI_JSON, &json),
        {.id = CLI_JSONL, .dst = &jsonl, .help = "JSON Lines (the default)"},
    };
    int rc = cli_parse(&batch_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    int counts[32];
    const int nc = cli_parse_int_list(batch_cmd.name, "--seqs", seqs, 1, 256, counts, 32);
    if (nc < 0) return 2;
    char mpath[PATH_CAP], tpath[PATH_CAP];
    cli_find_model_file(model, mpath, sizeof mpath);
    if (cli_check_default_model(batch_cmd.name, NULL, model, mpath) != 0) return 1;
    bench_batch_params p = {mpath,
                            tok ? cli_find_model_file(tok, tpath, sizeof tpath) : NULL,
                            counts, nc, threads, ctx_min, ctx_max, rounds, simd, BENCH_JSONL};
    if (out_format(batch_cmd.name, json, jsonl, BENCH_JSONL, &p.format) != 0) return 2;
    return bench_batch(&p);
}

static const cli_command soak_cmd = {
    "bench soak", NULL,
    "Honest devices' VERIFY throughput against `uhlm serve` (in this process, loopback,\n"
    "default admission settings, no auth) alone and then under an attacker mix that\n"
    "starts first: idle connections, connections pipelining OPENs with long prompts,\n"
    "and connections streaming invalid frames or non-protocol bytes. Reports both\n"
    "rates, their ratio (target >= 0.9) and the honest devices' unverified tokens\n"
    "(target 0) as one JSON object on stdout. Takes about 2 x (S + 1) seconds plus the\n"
    "devices' first OPENs.",
    NULL, 0};

static int bench_soak_cmd(int argc, char **argv) {
    const char *model = UHLM_DEFAULT_LLM, *tok = NULL, *log_path = NULL;
    long devices = 64, idle = 40, pipeliners = 4, garbage = 4, threads = 0;
    double seconds = 10, read_timeout = 30;
    int json = 0, jsonl = 0;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model, .help = "server model (the LLM)"},
        CLI_ARG_TOKENIZER(&tok),
        CLI_ARG(CLI_DEVICES, &devices),
        {.id = CLI_SECONDS, .dst = &seconds, .lo = 0.1, .hi = 3600},
        CLI_ARG(CLI_IDLE_CONNS, &idle),
        CLI_ARG(CLI_PIPELINERS, &pipeliners),
        CLI_ARG(CLI_GARBAGE, &garbage),
        {.id = CLI_THREADS, .dst = &threads, .help = "server model threads; 0 = all CPUs"},
        {.id = CLI_READ_TIMEOUT, .dst = &read_timeout, .lo = 0.1, .hi = 600,
         .help = "a device's wait for a reply before it counts the token unverified and "
                 "reconnects, in seconds (as `uhlm run`)"},
        CLI_ARG(CLI_LOG, &log_path),
        CLI_ARG(CLI_JSON, &json),
        {.id = CLI_JSONL, .dst = &jsonl, .help = "one line (the default)"},
    };
    int rc = cli_parse(&soak_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    char mpath[PATH_CAP], tpath[PATH_CAP];
    cli_find_model_file(model, mpath, sizeof mpath);
    if (cli_check_default_model(soak_cmd.name, NULL, model, mpath) != 0) return 1;
    bench_soak_params p = {mpath, cli_model_tokenizer_path(mpath, tok, tpath, sizeof tpath),
                           devices, idle, pipeliners, garbage, threads, seconds, read_timeout,
                           log_path, BENCH_JSONL};
    if (out_format(soak_cmd.name, json, jsonl, BENCH_JSONL, &p.format) != 0) return 2;
    return bench_soak(&p);
}

/* The -m paths of a bench (the LLM when none is given), each resolved like every command's
 * model; mp->paths is the caller's to free. -1 after a message when out of memory or a default
 * model is missing. */
typedef struct {
    char (*paths)[PATH_CAP];
    const char *v[CLI_TEXTS_MAX];
    int n;
} model_paths;

static int resolve_models(const char *cmd, cli_texts *models, model_paths *mp) {
    if (models->n == 0) models->v[models->n++] = UHLM_DEFAULT_LLM;
    mp->paths = malloc(sizeof *mp->paths * (size_t)models->n);
    if (!mp->paths) {
        fprintf(stderr, "uhlm %s: out of memory\n", cmd);
        return -1;
    }
    for (int i = 0; i < models->n; i++) {
        mp->v[i] = cli_find_model_file(models->v[i], mp->paths[i], PATH_CAP);
        if (cli_check_default_model(cmd, NULL, models->v[i], mp->v[i]) != 0) {
            free(mp->paths);
            return -1;
        }
    }
    mp->n = models->n;
    return 0;
}

static const cli_command gemv_cmd = {
    "bench gemv", NULL,
    "A decode step's matrix products alone (one activation row; query/key/value and\n"
    "gate/up together, as the forward pass calls them), on the model's own weights,\n"
    "against a plain read of the same bytes on the same threads. 1 and N threads\n"
    "alternate within each rep, so their ratio is taken under the same load; the\n"
    "outputs of both must be bit-identical (the run fails otherwise). A table on\n"
    "stdout, or JSON with --json / --jsonl.",
    NULL, 0};

static int bench_gemv_cmd(int argc, char **argv) {
    cli_texts models = {.n = 0};
    long threads = 2, reps = 7;
    int json = 0, jsonl = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    uhlm_load_mode load = UHLM_LOAD_AUTO;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &models, .many = 1, .def = UHLM_DEFAULT_LLM,
         .help = "a model to measure; repeat for more"},
        {.id = CLI_REPS, .dst = &reps, .def = "7", .help = "repetitions, each 1 and N threads"},
        {.id = CLI_THREADS, .dst = &threads, .lo = 1, .hi = 1024, .def = "2",
         .help = "N, the thread count compared with 1"},
        CLI_ARG(CLI_SIMD, &simd),
        CLI_ARG(CLI_LOAD, &load),
        CLI_ARG(CLI_JSON, &json),
        CLI_ARG(CLI_JSONL, &jsonl),
    };
    int rc = cli_parse(&gemv_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    bench_gemv_params p = {NULL, 0, threads, reps, simd, BENCH_TABLE, load};
    if (out_format(gemv_cmd.name, json, jsonl, BENCH_TABLE, &p.format) != 0) return 2;
    model_paths mp;
    if (resolve_models(gemv_cmd.name, &models, &mp) != 0) return 1;
    p.models = mp.v;
    p.n_models = mp.n;
    rc = bench_gemv(&p);
    free(mp.paths);
    return rc;
}

static const cli_command decode_cmd = {
    "bench", NULL,
    "For each model: prompt (batched prefill) tokens/s, decode tokens/s, the memory\n"
    "read bandwidth on the same threads (the plateau of a read curve over sizes from\n"
    "1 MiB up, beyond the cache the curve shows; a triad beside it), and the achieved\n"
    "fraction of the bound (read plateau / weight bytes read per token). A table on stdout,\n"
    "or JSON with --json / --jsonl.\n\n"
    "Subcommands (uhlm bench NAME --help):\n"
    "  uncertainty   uncertainty cost vs one SLM forward\n"
    "  serve         server verifications/s vs concurrent devices\n"
    "  batch         one forward over S sequences vs S forwards\n"
    "  gemv          a step's matrix products alone, 1 vs N threads\n"
    "  soak          honest devices' throughput under attack",
    NULL, 0};

int cmd_bench(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } subs[] = {{"uncertainty", bench_uncertainty_cmd},
                {"serve", bench_serve_cmd},
                {"batch", bench_batch_cmd},
                {"gemv", bench_gemv_cmd},
                {"soak", bench_soak_cmd}};
    for (size_t i = 0; argc > 1 && i < N_ARGS(subs); i++)
        if (!strcmp(argv[1], subs[i].name)) return subs[i].fn(argc - 1, argv + 1);
    cli_texts models = {.n = 0};
    long threads = 0, n_prompt = 64, n_gen = 64, reps = 3;
    int json = 0, jsonl = 0;
    uhlm_simd simd = UHLM_SIMD_AUTO;
    uhlm_load_mode load = UHLM_LOAD_AUTO;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &models, .many = 1, .def = UHLM_DEFAULT_LLM,
         .help = "a model to measure; repeat for more"},
        {.id = CLI_N_PROMPT, .dst = &n_prompt, .alias = "--prompt"},
        {.id = CLI_N_GEN, .dst = &n_gen, .alias = "--gen"},
        CLI_ARG(CLI_REPS, &reps),
        CLI_ARG(CLI_THREADS, &threads),
        CLI_ARG(CLI_SIMD, &simd),
        CLI_ARG(CLI_LOAD, &load),
        {.id = CLI_JSON, .dst = &json, .help = "one JSON document {\"bench\": \"decode\", "
                                               "\"results\": [one object per model]}"},
        CLI_ARG(CLI_JSONL, &jsonl),
    };
    int rc = cli_parse(&decode_cmd, args, N_ARGS(args), argc, argv, NULL);
    if (rc != CLI_CONTINUE) return cli_exit_status(rc);
    bench_decode_params p = {NULL, 0, threads, n_prompt, n_gen, reps, simd, BENCH_TABLE, load};
    if (out_format(decode_cmd.name, json, jsonl, BENCH_TABLE, &p.format) != 0) return 2;
    model_paths mp;
    if (resolve_models(decode_cmd.name, &models, &mp) != 0) return 1;
    p.models = mp.v;
    p.n_models = mp.n;
    rc = bench_decode(&p);
    free(mp.paths);
    return rc;
}
