/* cli.h: subcommand entry points and the small helpers every subcommand shares.
 *
 * Each subcommand is `int cmd_NAME(int argc, char **argv)` with argv[0] == "NAME"; it returns
 * the process exit status (0 ok, 1 runtime error, 2 usage error), parses its options through
 * the one option table (options.h, which also generates its --help and --version), writes
 * program output to stdout only, and diagnostics/stats to stderr. */
#ifndef UHLM_CLI_H
#define UHLM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "uhlm/model.h"

typedef struct cJSON cJSON;

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
/* `uhlm bench` and its subcommands (cmd_bench.c, over bench/bench.h). */
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
/* `uhlm serve`: the multi-session verification server (uhlm/server.h). */
int cmd_serve(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
/* `uhlm info`: what a model file is and whether it loads (cmd_info.c). */
int cmd_info(int argc, char **argv);

/* Strict number parsing for option values: the whole string must parse and lie in range.
 * On failure prints "uhlm NAME: invalid value for OPT: 'VAL' (...)" and returns -1. */
int cli_parse_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
int cli_parse_u64(const char *cmd, const char *opt, const char *val, uint64_t *out);
/* A comma-separated list of 1 to cap integers in [lo, hi] into out (int-sized by the range);
 * returns the count, or -1 after the same kind of message. */
int cli_parse_int_list(const char *cmd, const char *opt, const char *val, long lo, long hi,
                       int *out, int cap);
int cli_parse_float(const char *cmd, const char *opt, const char *val, double lo, double hi,
                    double *out);
/* Returns argv[*i + 1] and advances *i, or prints "option OPT needs a value" and returns NULL. */
const char *cli_need_arg(const char *cmd, int argc, char **argv, int *i);

/* Resolves a model or tokenizer file name: a path that exists is used as is; otherwise the
 * name is looked up in $UHLM_MODELS, ./models and ../shared/models. Writes into buf. */
const char *cli_find_model_file(const char *name, char *buf, size_t cap);

/* 1 when the file at path starts with the GGUF magic (0 also when it cannot be read). */
int cli_is_gguf(const char *path);

/* Loads a model found by cli_find_model_file; a llama2.c file gets the tokenizer -z named
 * (tok_arg) or, without one, the default tokenizer. On failure prints "uhlm CMD: [ROLE: ]..."
 * and returns NULL. role may be NULL. */
uhlm_model *cli_load_model(const char *cmd, const char *arg, const char *tok_arg, uhlm_load_mode load,
                           const char *role);

/* 0 when m has a chat template that --chat can render; otherwise prints why (no template, or
 * its kind) as "uhlm CMD: --chat: ..." and returns -1. */
int cli_check_chat(const char *cmd, const uhlm_model *m);
/* eval and calibrate: 1 when prompts are to be wrapped as user turns, i.e. the model has a
 * template --chat can render and no_chat is not set (then says so on stderr), else 0. */
int cli_prompts_chat(const char *cmd, const uhlm_model *m, int no_chat);
/* A prompt's ids: one chat user turn (chat != 0) or plain text with BOS as the vocabulary
 * says; returns as uhlm_tokenize. */
int cli_prompt_tokens(const uhlm_model *m, int chat, const char *text, int *ids, int cap,
                      uhlm_error *err);
/* --payload topk:K with K above the SLM's vocabulary is a usage error, like K = 0, though it
 * can only be seen once the model is loaded: prints "uhlm CMD: --payload ..." and returns -1
 * (the caller exits 2). */
struct uhlm_payload_spec;
int cli_check_payload(const char *cmd, const struct uhlm_payload_spec *p, const uhlm_model *slm);

/* Prints o as one line on stdout and deletes it. -1 (after "uhlm CMD: out of memory" on
 * stderr) when it cannot be printed, so no result goes missing silently. */
int cli_print_json(const char *cmd, cJSON *o);

/* The generated text as it streams: kept whole for --json and, when echo is set, written to
 * stdout piece by piece (flushed, so the reader sees each token as it is made). */
typedef struct cli_text {
    char *buf; /* always NUL-terminated */
    size_t len, cap;
    int echo;
} cli_text;
int cli_text_init(cli_text *t, int echo);                /* -1 when out of memory */
int cli_text_add(cli_text *t, const char *s, size_t n); /* -1 when out of memory */
/* The last piece (the detokenizer's flushed bytes); when echoing, also ends the line and
 * flushes, so the text is complete on stdout before a summary goes to stderr. */
int cli_text_end(cli_text *t, const char *s, size_t n); /* -1 when out of memory */
void cli_text_free(cli_text *t);

/* The default pair of every command (issue 10): SmolLM2-135M-Instruct as shipped, which
 * scripts/setup.sh fetches into models/, and the drafter trained for it by train/, committed as
 * models/smollm2-drafter.gguf. Both are GGUF files with one vocabulary and a chat template. */
#define UHLM_DEFAULT_SLM "smollm2-drafter.gguf"
#define UHLM_DEFAULT_LLM "SmolLM2-135M-Instruct.Q4_1.gguf"
/* The tokenizer of a llama2.c model given without -z; GGUF files embed their vocabulary. */
#define UHLM_DEFAULT_TOKENIZER "tok512.bin"
/* The TinyStories pair, by name (fast tests, small demos). */
#define UHLM_TINYSTORIES_PAIR "-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin -z tok512.bin"
#define UHLM_TINYSTORIES_SLM "-m stories-slm-0.28M.bin -z tok512.bin"
#define UHLM_TINYSTORIES_LLM "-m stories-llm-2.76M.bin -z tok512.bin"
/* The user turn of `uhlm run` when no -p/-f is given and the SLM has a chat template. Not one of
 * the evaluation prompts (the first 100 records of alpaca-200.jsonl). */
#define UHLM_DEFAULT_CHAT_PROMPT "Write a haiku about autumn leaves."

/* When name is one of the default models and path (its cli_find_model_file result) does not
 * exist, prints which file, where it was looked for and what to do, as "uhlm CMD: [ROLE: ]...",
 * and returns -1: the loader's "cannot open" would not say that the file is a default one that
 * setup fetches, nor how to name another pair. 0 otherwise. */
int cli_check_default_model(const char *cmd, const char *role, const char *name,
                            const char *path);
/* After a vocabulary mismatch: when one of the two models is a default one (the other named),
 * says so on stderr as "uhlm CMD: ..." with how to name a whole pair. */
void cli_pair_hint(const char *cmd, const char *slm_arg, const char *llm_arg);
/* The tokenizer for a model at mpath: tok_arg resolved when given; else the default tokenizer
 * for a llama2.c file; NULL for GGUF (its own vocabulary). Writes into buf. */
const char *cli_model_tokenizer_path(const char *mpath, const char *tok_arg, char *buf,
                                     size_t cap);

#endif
