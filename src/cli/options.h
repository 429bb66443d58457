/* options.h: the one option table of the `uhlm` subcommands.
 *
 * Every option is written once, in options.c: its short and long names, its value's kind and
 * range, its help text and its group. A subcommand lists the options it takes (cli_arg), each
 * bound to the variable that receives its value, and calls cli_parse: --help is generated from
 * the table and that list, so a usage line cannot drift from what the parser accepts, and
 * every number is range-checked with the same message ("invalid value for OPT: 'VAL' (...)").
 * The default shown in --help is the bound variable's value before parsing.
 *
 * Names follow llama.cpp where it has the option (--model, --prompt, --n-predict, --threads,
 * -f/--file, -s/--seed, -c/--ctx-size); the spellings uhlm had before stay as aliases. Where a
 * command takes two models they are --slm and --llm, with -m an alias of --slm; with one model
 * it is -m/--model. */
#ifndef UHLM_CLI_OPTIONS_H
#define UHLM_CLI_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

/* Every option any subcommand takes. Two options may share a long name when they mean
 * different things in the commands that take them (--snr: one link SNR in run, a grid in
 * eval; --devices: a list in bench serve, a count in bench soak); no command takes both. */
typedef enum cli_opt_id {
    /* model */
    CLI_MODEL, CLI_SLM, CLI_LLM, CLI_TOKENIZER,
    /* input */
    CLI_PROMPT, CLI_FILE, CLI_PROMPTS, CLI_CHAT, CLI_SYSTEM, CLI_NO_CHAT, CLI_MAX_INPUT_MB,
    /* generation */
    CLI_N_PREDICT, CLI_CTX_SIZE, CLI_SEED,
    /* sampling */
    CLI_TEMP, CLI_TOP_K, CLI_TOP_P,
    /* hybrid policy */
    CLI_MODE, CLI_UTH, CLI_SKIP_PROB, CLI_CALIB, CLI_RISK, CLI_SHADOW,
    /* uncertainty */
    CLI_UNCERTAINTY, CLI_SAMPLES, CLI_THETA_MAX,
    /* payload */
    CLI_PAYLOAD,
    /* channel */
    CLI_SNR, CLI_SNR_GRID, CLI_BANDWIDTH, CLI_DOWN_SNR, CLI_DOWN_BANDWIDTH, CLI_LATENCY,
    CLI_FADING, CLI_CHANNEL,
    /* remote verification (the device side of `uhlm serve`) */
    CLI_SERVER, CLI_AUTH_TOKEN_FILE, CLI_CONNECT_TIMEOUT, CLI_READ_TIMEOUT, CLI_REQUIRE_SERVER,
    CLI_FALLBACK_AFTER,
    /* server */
    CLI_HOST, CLI_PORT, CLI_PORT_FILE, CLI_MAX_SESSIONS, CLI_MAX_CTX, CLI_BATCH_WINDOW_US,
    CLI_NO_BATCHING, CLI_IDLE_TIMEOUT, CLI_STATS_PORT, CLI_QUIET, CLI_HANDSHAKE_TIMEOUT,
    CLI_REQUEST_IDLE_TIMEOUT, CLI_MAX_CONNS, CLI_MAX_PENDING, CLI_MAX_CONNS_PER_ADDR,
    CLI_STATS_MAX_CONNS, CLI_STEP_TOKENS, CLI_SHARE_PREFIX_CACHE,
    /* TLS on the device-server link (docs/deploy-tls.md) */
    CLI_TLS_CERT, CLI_TLS_KEY, CLI_INSECURE, CLI_TLS_CA, CLI_TLS_INSECURE,
    /* evaluation and calibration */
    CLI_MODES, CLI_SPLIT, CLI_LIMIT, CLI_GREEDY_OFF, CLI_HIDDEN_COSINE, CLI_SWEEP, CLI_SWEEP_METHODS, CLI_SWEEP_SNR,
    CLI_BUDGET, CLI_CSV, CLI_SEEDS,
    /* benchmarks */
    CLI_N_PROMPT, CLI_N_GEN, CLI_REPS, CLI_SEQS, CLI_DEVICES_LIST, CLI_DEVICES, CLI_SECONDS,
    CLI_CTX_MIN, CLI_CTX_MAX, CLI_CATCHUP, CLI_NO_COMPARE, CLI_ROUNDS, CLI_IDLE_CONNS,
    CLI_PIPELINERS, CLI_GARBAGE, CLI_LOG,
    /* conversion and tokenization */
    CLI_TYPE, CLI_RANDOM_SHAPE, CLI_VOCAB, CLI_NO_BOS, CLI_SPECIAL, CLI_PIECES, CLI_OUTPUT_TOKENS,
    /* threads */
    CLI_THREADS, CLI_SIMD, CLI_NUMERICS, CLI_LOAD,
    /* output */
    CLI_OUTPUT, CLI_JSON, CLI_JSONL, CLI_EVENTS, CLI_COSINE,
    /* the OpenAI-compatible endpoint of `uhlm run --listen` */
    CLI_LISTEN, CLI_MAX_QUEUE,
    CLI_N_OPTS
} cli_opt_id;

/* Texts given by -p (where '-' reads standard input) or -f FILE, or by an option that may be
 * repeated (bench -m); in order. Texts read from a file or stdin are owned here. */
#define CLI_TEXTS_MAX 64
typedef struct cli_texts {
    const char *v[CLI_TEXTS_MAX];
    char *owned[CLI_TEXTS_MAX];
    int n;
} cli_texts;
void cli_texts_free(cli_texts *t);
/* The last text given, or def when there is none. */
const char *cli_texts_last(const cli_texts *t, const char *def);

/* One option a subcommand takes. dst receives the value, by the option's kind:
 *   flags: int (set to 1); names and paths: const char *; integers: long (uint64_t for
 *   --seed); numbers: double; --simd: uhlm_simd; --load: uhlm_load_mode; --mode: uhlm_mode; --payload:
 *   uhlm_payload_spec; --uncertainty: uhlm_unc_method; --fading: uhlm_fading;
 *   --channel: uhlm_channel_mode; --type: uhlm_type; -p/-f and repeated options: cli_texts.
 * The other fields are optional. */
typedef struct cli_arg {
    cli_opt_id id;
    void *dst;
    const char *alias; /* one more spelling in this command, e.g. "-m" for --slm */
    const char *def;   /* the default as --help says it, when the value before parsing does not */
    const char *help;  /* this command's wording instead of the table's */
    double lo, hi;     /* a narrower range in this command (both 0: the table's) */
    const char **raw;  /* also receives the value as given (for reports) */
    int many;          /* the option may be repeated: dst is a cli_texts of every value */
} cli_arg;

/* The plain binding of one option to its variable; the optional fields go by name, e.g.
 * {.id = CLI_SLM, .dst = &slm, .alias = "-m"}. */
#define CLI_ARG(opt, var) {.id = (opt), .dst = (var)}

/* Whole groups, for the commands that take all of a group's options: */
/* -z where a llama2.c model without it gets the default tokenizer (named in cli.h) */
#define CLI_ARG_TOKENIZER(tok) \
    {.id = CLI_TOKENIZER, .dst = (tok), .def = UHLM_DEFAULT_TOKENIZER " for a llama2.c model"}
/* the device/server pair of models, with -m as the device's (--slm) alias */
#define CLI_ARGS_PAIR(slm, llm, tok) \
    {.id = CLI_SLM, .dst = (slm), .alias = "-m"}, CLI_ARG(CLI_LLM, llm), CLI_ARG_TOKENIZER(tok)
#define CLI_ARGS_SAMPLING(temp, top_k, top_p) \
    CLI_ARG(CLI_TEMP, temp), CLI_ARG(CLI_TOP_K, top_k), CLI_ARG(CLI_TOP_P, top_p)
#define CLI_ARGS_UNCERTAINTY(method, samples, theta_max) \
    CLI_ARG(CLI_UNCERTAINTY, method), CLI_ARG(CLI_SAMPLES, samples), \
        CLI_ARG(CLI_THETA_MAX, theta_max)
/* the device side of remote verification, without --server (whose help differs by command) */
#define CLI_ARGS_REMOTE(token_file, connect_timeout, read_timeout) \
    CLI_ARG(CLI_AUTH_TOKEN_FILE, token_file), CLI_ARG(CLI_CONNECT_TIMEOUT, connect_timeout), \
        CLI_ARG(CLI_READ_TIMEOUT, read_timeout)

typedef struct cli_command {
    const char *name;     /* "generate", "bench serve" */
    const char *synopsis; /* after "[options]" on the usage line, e.g. "TEXT..." (or NULL) */
    const char *about;    /* what the command does: the paragraph after the usage line */
    const char *epilog;   /* after the options (or NULL) */
    int positional;       /* nonzero: options end at the first argument that is not one */
} cli_command;

enum { CLI_CONTINUE = 0, CLI_EXIT_OK, CLI_USAGE, CLI_FAILED };

/* Parses argv[1..argc-1] (argv[0] is the command's name) into the bound variables.
 * -h/--help prints the generated help on stdout and --version the version, then returns
 * CLI_EXIT_OK; an unknown option, a missing value or a value out of range prints one line
 * "uhlm CMD: ..." on stderr and returns CLI_USAGE; a -f file or standard input that cannot
 * be read, CLI_FAILED (after the message); otherwise CLI_CONTINUE, with *first_pos
 * (when not NULL) the index of the first positional argument (argc when none). Texts read
 * for -p - and -f are owned by their cli_texts, also after a failure. */
int cli_parse(const cli_command *c, const cli_arg *args, size_t n_args, int argc, char **argv,
              int *first_pos);
/* The exit status for a cli_parse result other than CLI_CONTINUE. */
static inline int cli_exit_status(int parse_rc) {
    return parse_rc == CLI_EXIT_OK ? 0 : parse_rc == CLI_FAILED ? 1 : 2;
}

/* Prints the generated help of c with args on f (what --help prints). */
void cli_print_help(FILE *f, const cli_command *c, const cli_arg *args, size_t n_args);

/* All of standard input, with a NUL after the *len bytes (len may be NULL); more than
 * UHLM_INPUT_MAX_MB MiB is refused like any input file. NULL after "uhlm CMD: ..." on stderr. */
char *cli_read_stdin(const char *cmd, size_t *len);

/* What --version prints after "uhlm ". */

#endif
