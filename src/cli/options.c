/* options.c: the option table and the parser every subcommand shares (see options.h). */
#include "cli/options.h"
#include "uhlm/harness.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "uhlm/calib.h"
#include "uhlm/channel.h"
#include "uhlm/common.h"
#include "uhlm/payload.h"
#include "uhlm/policy.h"
#include "model/kernels/quant.h"
#include "uhlm/uncertainty.h"

typedef enum {
    K_FLAG,      /* int, set to 1 */
    K_STR,       /* const char * */
    K_INT,       /* long in [lo, hi] */
    K_U64,       /* uint64_t */
    K_FLOAT,     /* double in [lo, hi] */
    K_TEXT,      /* cli_texts: the value, or standard input for '-' */
    K_TEXT_FILE, /* cli_texts: the file's contents */
    K_CUSTOM,    /* parsed by the entry's parse function */
} opt_kind;

typedef enum {
    G_MODEL, G_INPUT, G_GENERATION, G_SAMPLING, G_HYBRID, G_UNCERTAINTY, G_PAYLOAD, G_CHANNEL,
    G_REMOTE, G_SERVER, G_EVAL, G_BENCH, G_COMMAND, G_THREADS, G_OUTPUT, G_N
} opt_group;

static const char *const group_title[G_N] = {
    "Model",        "Input",   "Generation",          "Sampling", "Hybrid policy",
    "Uncertainty",  "Payload", "Channel",             "Remote verification",
    "Server",       "Evaluation", "Benchmark",        "Command",  "Threads",
    "Output",
};

/* Writes why a value is refused into why; 0 when it was parsed into dst. */
typedef int (*parse_fn)(const char *v, void *dst, char *why, size_t cap);

typedef struct {
    char short_name;   /* 'm' for -m, 0 for none */
    const char *name;  /* long name without the dashes */
    const char *meta;  /* the value's name in --help; NULL for flags */
    opt_kind kind;
    double lo, hi;
    parse_fn parse;
    const char *def; /* the default as --help says it, when the value cannot say it */
    opt_group group;
    const char *help;
} opt_def;

static int refuse(const char *expected, char *why, size_t cap) {
    snprintf(why, cap, "expected %s", expected);
    return -1;
}

static int parse_simd(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_simd_from_name(v, dst) == 0 ? 0 : refuse("auto, scalar, avx2 or avx512", why, cap);
}

static int parse_numerics(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_numerics_from_name(v, dst) == 0 ? 0 : refuse("default or ggml", why, cap);
}

static int parse_load(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_load_mode_from_name(v, dst) == 0 ? 0 : refuse("auto, mmap or copy", why, cap);
}

static int parse_mode(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_mode_parse(v, dst) == 0 ? 0 : refuse("slm, llm, hlm, rand or uhlm", why, cap);
}

static int parse_unc(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_unc_method_parse(v, dst) == 0
               ? 0
               : refuse("perturb, entropy, maxprob or margin", why, cap);
}

static int parse_fading(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_fading_parse(v, dst) == 0 ? 0 : refuse("none or rayleigh", why, cap);
}

static int parse_channel(const char *v, void *dst, char *why, size_t cap) {
    return uhlm_channel_mode_parse(v, dst) == 0 ? 0 : refuse("accounted or shaped", why, cap);
}

static int parse_payload(const char *v, void *dst, char *why, size_t cap) {
    uhlm_error err = {{0}};
    if (uhlm_payload_parse(v, dst, &err) == 0) return 0;
    snprintf(why, cap, "%s", err.msg);
    return -1;
}

static int parse_type(const char *v, void *dst, char *why, size_t cap) {
    uhlm_type t;
    if (uhlm_type_from_name(v, &t) == 0 && t != UHLM_TYPE_Q8_G && t != UHLM_TYPE_Q8_1) {
        *(uhlm_type *)dst = t;
        return 0;
    }
    return refuse("f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k or q6_k", why,
                  cap);
}

static int parse_risk(const char *v, void *dst, char *why, size_t cap) {
    uhlm_error err = {{0}};
    if (uhlm_calib_risk_parse(v, NULL, NULL, &err) == 0) {
        *(const char **)dst = v;
        return 0;
    }
    return refuse("averse, prone, budget or budget:R with R in [0, 1]", why, cap);
}

#define BIG 1e15
#define I24 (double)(1 << 24)
#define I20 (double)(1 << 20)

/* Each option once. Ranges are the values the library accepts, wide enough for any use. */
static const opt_def table[CLI_N_OPTS] = {
    [CLI_MODEL] = {'m', "model", "MODEL", K_STR, 0, 0, NULL, NULL, G_MODEL,
                   "model file: llama2.c .bin or GGUF (looked up as given, then in $UHLM_MODELS, "
                   "./models and ../shared/models)"},
    [CLI_SLM] = {0, "slm", "SLM", K_STR, 0, 0, NULL, NULL, G_MODEL,
                 "device model: the small model that drafts every token"},
    [CLI_LLM] = {0, "llm", "LLM", K_STR, 0, 0, NULL, NULL, G_MODEL,
                 "server model: the large model that verifies drafts"},
    [CLI_TOKENIZER] = {'z', "tokenizer", "TOKENIZER", K_STR, 0, 0, NULL, NULL, G_MODEL,
                       "llama2.c tokenizer.bin for llama2.c models (GGUF files embed their "
                       "vocabulary); two models must share one vocabulary"},

    [CLI_PROMPT] = {'p', "prompt", "TEXT", K_TEXT, 0, 0, NULL, "empty: start from BOS",
                    G_INPUT, "prompt text; '-' reads standard input"},
    [CLI_FILE] = {'f', "file", "FILE", K_TEXT_FILE, 0, 0, NULL, NULL, G_INPUT,
                  "read the prompt text from FILE (one final newline dropped, as llama.cpp "
                  "does; also for -p -)"},
    [CLI_PROMPTS] = {0, "prompts", "FILE", K_STR, 0, 0, NULL, NULL, G_INPUT,
                     "JSONL or a JSON array of {\"id\",\"prompt\"} or Alpaca records (user turn: "
                     "instruction, or instruction + \"\\n\\n\" + input)"},
    [CLI_CHAT] = {0, "chat", NULL, K_FLAG, 0, 0, NULL, NULL, G_INPUT,
                  "wrap the prompt as one user turn in the model's chat template (chatml, llama2, "
                  "llama3, zephyr) and print only the answer"},
    [CLI_SYSTEM] = {0, "system", "TEXT", K_STR, 0, 0, NULL, "none", G_INPUT,
                    "with --chat: a system message before the user turn (like llama.cpp, no "
                    "template default is injected)"},
    [CLI_NO_CHAT] = {0, "no-chat", NULL, K_FLAG, 0, 0, NULL, NULL, G_INPUT,
                     "use prompts as plain text even when the SLM has a chat template (by default "
                     "they are wrapped as user turns in it, as --chat)"},
    [CLI_MAX_INPUT_MB] = {0, "max-input-mb", "MB", K_INT, 1, I20, NULL, NULL, G_INPUT,
                          "largest prompt or calibration file read, in MiB"},

    [CLI_N_PREDICT] = {'n', "n-predict", "N", K_INT, 0, I24, NULL, NULL, G_GENERATION,
                       "tokens to generate; stops early at an end-of-generation token or the "
                       "context"},
    [CLI_CTX_SIZE] = {'c', "ctx-size", "N", K_INT, 0, I24, NULL, NULL, G_GENERATION,
                      "context positions, prompt included; 0 = the model's context"},
    [CLI_SEED] = {'s', "seed", "S", K_U64, 0, 0, NULL, NULL, G_GENERATION,
                  "random seed; with a seed the output is fixed for every thread count and SIMD "
                  "level"},

    [CLI_TEMP] = {0, "temp", "T", K_FLOAT, 0, 1e6, NULL, NULL, G_SAMPLING,
                  "temperature, 0 = greedy"},
    [CLI_TOP_K] = {0, "top-k", "K", K_INT, 0, I24, NULL, NULL, G_SAMPLING,
                   "keep the K most likely tokens, 0 = off"},
    [CLI_TOP_P] = {0, "top-p", "P", K_FLOAT, 1e-9, 1, NULL, NULL, G_SAMPLING,
                   "nucleus sampling mass, 1 = off"},

    [CLI_MODE] = {0, "mode", "MODE", K_CUSTOM, 0, 0, parse_mode, "uhlm", G_HYBRID,
                  "slm: SLM alone; llm: LLM alone; hlm: verify every token; rand: skip with "
                  "probability --skip-prob; uhlm: skip when the uncertainty u <= --uth"},
    [CLI_UTH] = {0, "uth", "U", K_FLOAT, -1e9, 1e9, NULL, NULL, G_HYBRID,
                 "uhlm threshold (< 0 verifies all, >= 1 skips all)"},
    [CLI_SKIP_PROB] = {0, "skip-prob", "P", K_FLOAT, 0, 1, NULL, NULL, G_HYBRID,
                       "rand skip probability"},
    [CLI_CALIB] = {0, "calib", "FILE", K_STR, 0, 0, NULL, NULL, G_HYBRID,
                   "with --risk: u_th from `uhlm calibrate` output FILE instead of --uth"},
    [CLI_RISK] = {0, "risk", "R", K_CUSTOM, 0, 0, parse_risk, NULL, G_HYBRID,
                  "with --calib: averse (-b/a), prone ((delta-b)/a): the paper's thresholds; "
                  "budget (the stored risk budget) or budget:X (largest u_th whose 95% upper "
                  "limit of rejected-and-skipped tokens is <= X)"},
    [CLI_SHADOW] = {0, "shadow", NULL, K_FLAG, 0, 0, NULL, NULL, G_HYBRID,
                    "also evaluate skipped tokens with the LLM (untimed) to report the true skip "
                    "rate and would-be rejections"},

    [CLI_UNCERTAINTY] = {0, "uncertainty", "U", K_CUSTOM, 0, 0, parse_unc, "perturb",
                         G_UNCERTAINTY,
                         "perturb (temperature perturbation), entropy, maxprob or margin"},
    [CLI_SAMPLES] = {0, "samples", "M", K_INT, 1, 1e6, NULL, NULL, G_UNCERTAINTY,
                     "perturbation samples"},
    [CLI_THETA_MAX] = {0, "theta-max", "T", K_FLOAT, 1e-6, 1e6, NULL, NULL, G_UNCERTAINTY,
                       "largest perturbation temperature"},

    [CLI_PAYLOAD] = {0, "payload", "ENC", K_CUSTOM, 0, 0, parse_payload, "f32", G_PAYLOAD,
                     "uplink encoding of x: f32, f16, topk:K (8-bit) or topk:K:16; the draft is "
                     "sampled from the decoded x"},

    [CLI_SNR] = {0, "snr", "DB", K_FLOAT, -200, 200, NULL, NULL, G_CHANNEL,
                 "mean SNR of both links in dB"},
    [CLI_SNR_GRID] = {0, "snr", "DB,...", K_STR, 0, 0, NULL, "-10,-5,0,5,10,20,30",
                      G_CHANNEL, "the SNR grid in dB (numbers in [-200, 200])"},
    [CLI_BANDWIDTH] = {0, "bandwidth", "HZ", K_FLOAT, 1e-3, BIG, NULL, NULL, G_CHANNEL,
                       "bandwidth of both links in Hz"},
    [CLI_DOWN_SNR] = {0, "down-snr", "DB", K_FLOAT, -200, 200, NULL, "as the uplink",
                      G_CHANNEL, "downlink SNR only"},
    [CLI_DOWN_BANDWIDTH] = {0, "down-bandwidth", "HZ", K_FLOAT, 1e-3, BIG, NULL,
                            "as the uplink", G_CHANNEL, "downlink bandwidth only"},
    [CLI_LATENCY] = {0, "latency", "S", K_FLOAT, 0, 1e6, NULL, NULL, G_CHANNEL,
                     "fixed latency per message, both directions"},
    [CLI_FADING] = {0, "fading", "F", K_CUSTOM, 0, 0, parse_fading, "none", G_CHANNEL,
                    "none or rayleigh (block fading per message)"},
    [CLI_CHANNEL] = {0, "channel", "C", K_CUSTOM, 0, 0, parse_channel, "accounted",
                     G_CHANNEL,
                     "accounted: link time goes to a virtual clock; shaped: the device also "
                     "really waits each message's link time"},

    [CLI_SERVER] = {0, "server", "HOST:PORT", K_STR, 0, 0, NULL, NULL, G_REMOTE,
                    "verify on a `uhlm serve` server instead of in this process (the LLM is "
                    "then not loaded here, except for --shadow). If the server is unreachable "
                    "or dies, the request waits up to --fallback-after S, reconnecting and "
                    "resynchronising; after that generation goes on with the SLM alone (tokens "
                    "counted as unverified) and reconnects with backoff; in --mode llm that is an "
                    "error instead (exit 1)"},
    [CLI_AUTH_TOKEN_FILE] = {0, "auth-token-file", "F", K_STR, 0, 0, NULL, NULL, G_REMOTE,
                             "the server's shared auth token (first line of F)"},
    [CLI_CONNECT_TIMEOUT] = {0, "connect-timeout", "S", K_FLOAT, 1e-3, 3600, NULL, NULL,
                             G_REMOTE, "per connection attempt, in seconds"},
    [CLI_READ_TIMEOUT] = {0, "read-timeout", "S", K_FLOAT, 1e-3, 86400, NULL, NULL,
                          G_REMOTE, "per reply, LLM time included, in seconds"},
    [CLI_REQUIRE_SERVER] = {0, "require-server", NULL, K_FLAG, 0, 0, NULL, NULL, G_REMOTE,
                            "fail (exit 1) instead of going on with the SLM alone when the "
                            "server cannot verify (unreachable, lost, context full, payload "
                            "refused); always so in --mode llm"},
    [CLI_FALLBACK_AFTER] = {0, "fallback-after", "S", K_FLOAT, 0, 86400, NULL, NULL, G_REMOTE,
                            "when the server is lost or unreachable, hold the request up to S "
                            "seconds, reconnecting (behind a balancer: to another backend) and "
                            "resending it, before going on with the SLM alone; 0 = fall back at "
                            "once. With --require-server or --mode llm the error comes after S"},

    [CLI_HOST] = {0, "host", "H", K_STR, 0, 0, NULL, NULL, G_SERVER,
                  "bind address (0.0.0.0 for all; an address other than loopback needs "
                  "--tls-cert/--tls-key and --auth-token-file, or --insecure)"},
    [CLI_PORT] = {0, "port", "P", K_INT, 0, 65535, NULL, NULL, G_SERVER,
                  "TCP port (0 = any free port)"},
    [CLI_PORT_FILE] = {0, "port-file", "F", K_STR, 0, 0, NULL, NULL, G_SERVER,
                       "write the bound port to F once listening (for scripts)"},
    [CLI_MAX_SESSIONS] = {0, "max-sessions", "N", K_INT, 1, 4096, NULL, NULL, G_SERVER,
                          "sessions (KV caches) at once"},
    [CLI_MAX_CTX] = {0, "max-ctx", "N", K_INT, 1, I24, NULL, "the model's context",
                     G_SERVER, "positions per session"},
    [CLI_BATCH_WINDOW_US] = {0, "batch-window-us", "U", K_INT, 0, 1e7, NULL, NULL,
                             G_SERVER, "how long a request waits for others to batch with"},
    [CLI_NO_BATCHING] = {0, "no-batching", NULL, K_FLAG, 0, 0, NULL, NULL, G_SERVER,
                         "one forward per request (for comparison)"},
    [CLI_IDLE_TIMEOUT] = {0, "idle-timeout", "S", K_INT, 0, 2e6, NULL, NULL, G_SERVER,
                          "drop connections silent for S seconds, 0 = never"},
    [CLI_STATS_PORT] = {0, "stats-port", "P", K_INT, 0, 65535, NULL, "none", G_SERVER,
                        "HTTP on this port (0 = any): /metrics, /health"},
    [CLI_QUIET] = {0, "quiet", NULL, K_FLAG, 0, 0, NULL, NULL, G_SERVER, "no log lines"},
    [CLI_HANDSHAKE_TIMEOUT] = {0, "handshake-timeout", "S", K_FLOAT, 0.001, 3600, NULL,
                               NULL, G_SERVER,
                               "HELLO must be complete S seconds after connecting"},
    [CLI_REQUEST_IDLE_TIMEOUT] = {0, "request-idle-timeout", "S", K_FLOAT, 0, 2e6, NULL,
                                  NULL, G_SERVER,
                                  "close connections that send no OPEN, VERIFY, GENERATE or "
                                  "CLOSE for S seconds (PINGs do not count), freeing their "
                                  "session; 0 = never"},
    [CLI_MAX_CONNS] = {0, "max-conns", "N", K_INT, 1, 65536, NULL,
                       "2 x sessions + 8", G_SERVER, "connections past HELLO"},
    [CLI_MAX_PENDING] = {0, "max-pending", "N", K_INT, 1, 65536, NULL,
                         "max-sessions, at least 16", G_SERVER,
                         "connections still before HELLO; when full, a newcomer replaces the "
                         "oldest of the address holding the most"},
    [CLI_MAX_CONNS_PER_ADDR] = {0, "max-conns-per-addr", "N", K_INT, 1, 65536, NULL,
                                "max-sessions, at least 8", G_SERVER,
                                "connections from one address"},
    [CLI_STATS_MAX_CONNS] = {0, "stats-max-conns", "N", K_INT, 1, 1024, NULL, "4",
                             G_SERVER, "stats-port connections"},
    [CLI_STEP_TOKENS] = {0, "step-tokens", "N", K_INT, 1, I20, NULL, "64", G_SERVER,
                         "tokens one compute step shares among the queued requests; a long "
                         "prompt or catch-up takes its share per step beyond its address's burst "
                         "credit (a context per 10 s), so it cannot stall the others"},
    [CLI_SHARE_PREFIX_CACHE] = {0, "share-prefix-cache", NULL, K_FLAG, 0, 0, NULL, NULL,
                                G_SERVER,
                                "let any device's OPEN reuse the KV cache another device left "
                                "(single-tenant deployments only: OPENED's cost and timing then "
                                "tell a client how much of its prompt others sent). Default: "
                                "reuse within one tenant only, i.e. the same auth token, or "
                                "without auth the same address"},

    [CLI_TLS_CERT] = {0, "tls-cert", "F", K_STR, 0, 0, NULL, NULL, G_SERVER,
                      "serve devices over TLS 1.3 with the PEM certificate (chain) in F; needs "
                      "--tls-key (docs/deploy-tls.md)"},
    [CLI_TLS_KEY] = {0, "tls-key", "F", K_STR, 0, 0, NULL, NULL, G_SERVER,
                     "the PEM private key of --tls-cert"},
    [CLI_INSECURE] = {0, "insecure", NULL, K_FLAG, 0, 0, NULL, NULL, G_SERVER,
                      "allow --host to be a non-loopback address without TLS or without an auth "
                      "token (refused otherwise)"},
    [CLI_TLS_CA] = {0, "tls-ca", "F", K_STR, 0, 0, NULL, NULL, G_REMOTE,
                    "connect to --server over TLS 1.3, verifying its certificate chain against "
                    "the PEM CA file F and its name against --server's host"},
    [CLI_TLS_INSECURE] = {0, "tls-insecure", NULL, K_FLAG, 0, 0, NULL, NULL, G_REMOTE,
                          "TLS WITHOUT verifying the server's certificate (tests only: anyone on "
                          "the path can pose as the server); warns on every run"},
    [CLI_MODES] = {0, "modes", "LIST", K_STR, 0, 0, NULL, NULL, G_EVAL,
                   "comma-separated modes to run (slm, llm, hlm, rand, uhlm)"},
    [CLI_SPLIT] = {0, "split", "F", K_FLOAT, 0, 1, NULL, NULL, G_EVAL,
                   "share of prompts (by a hash of the id) in the calibration part; the rest is "
                   "the held-out test part"},
    [CLI_LIMIT] = {0, "limit", "P", K_INT, 1, 1073741824.0, NULL, "all", G_EVAL,
                   "use only the first P prompts"},
    [CLI_GREEDY_OFF] = {0, "no-greedy", NULL, K_FLAG, 0, 0, NULL, NULL, G_EVAL,
                        "skip the greedy (temperature 0) reference runs"},
    [CLI_HIDDEN_COSINE] = {0, "hidden-cosine", NULL, K_FLAG, 0, 0, NULL, NULL, G_EVAL,
                           "also measure the cosine of mean-pooled LLM hidden states to the llm "
                           "answer (the cos_sim columns; off: it does not separate the modes and "
                           "costs an extra LLM pass per run)"},
    [CLI_SWEEP] = {0, "sweep", "Q,...", K_STR, 0, 0, NULL, "0.2,0.4,0.6,0.8", G_EVAL,
                   "u_th at these quantiles of u (in [0, 1]), or none"},
    [CLI_SWEEP_METHODS] = {0, "sweep-methods", "LIST", K_STR, 0, 0, NULL, NULL, G_EVAL,
                           "uncertainty methods the sweep compares"},
    [CLI_SWEEP_SNR] = {0, "sweep-snr", "DB", K_FLOAT, -200, 200, NULL, NULL, G_EVAL,
                       "the SNR of the sweep's link"},
    [CLI_BUDGET] = {0, "budget", "R", K_FLOAT, 0, 1, NULL, NULL, G_EVAL,
                    "risk budget of thresholds.budget, the share of all tokens skipped and "
                    "rejected; other budgets are read later from the stored curve with "
                    "--risk budget:R"},
    [CLI_CSV] = {0, "csv", "FILE", K_STR, 0, 0, NULL, NULL, G_OUTPUT,
                 "per-token records: prompt, split, u, beta, accepted, ..."},
    [CLI_SEEDS] = {0, "seeds", "K", K_INT, 1, UHLM_EVAL_MAX_REPS, NULL, "1", G_EVAL,
                   "run every prompt with K seeds (the first is --seed's); intervals over seeds "
                   "when there is one prompt"},

    [CLI_N_PROMPT] = {0, "n-prompt", "N", K_INT, 1, I20, NULL, NULL, G_BENCH,
                      "prompt tokens (one batched prefill)"},
    [CLI_N_GEN] = {0, "n-gen", "N", K_INT, 1, I20, NULL, NULL, G_BENCH,
                   "tokens decoded one at a time"},
    [CLI_REPS] = {0, "reps", "R", K_INT, 1, 1000, NULL, NULL, G_BENCH,
                  "repetitions (best of)"},
    [CLI_SEQS] = {0, "seqs", "LIST", K_STR, 0, 0, NULL, NULL, G_BENCH,
                  "comma-separated sequence counts, each in [1, 256]"},
    [CLI_DEVICES_LIST] = {0, "devices", "LIST", K_STR, 0, 0, NULL, NULL, G_BENCH,
                          "comma-separated device counts, each in [1, 256]"},
    [CLI_DEVICES] = {0, "devices", "N", K_INT, 1, 250, NULL, NULL, G_BENCH,
                     "honest devices"},
    [CLI_SECONDS] = {0, "seconds", "S", K_FLOAT, 0.05, 3600, NULL, NULL, G_BENCH,
                     "measuring time per run"},
    [CLI_CTX_MIN] = {0, "ctx-min", "N", K_INT, 1, I20, NULL, NULL, G_BENCH,
                     "shortest context"},
    [CLI_CTX_MAX] = {0, "ctx-max", "N", K_INT, 1, I20, NULL,
                     "256 or 90% of the model's context, if less", G_BENCH, "longest context"},
    [CLI_CATCHUP] = {0, "catchup", "N", K_INT, 0, 64, NULL, NULL, G_BENCH,
                     "skipped tokens sent with each VERIFY"},
    [CLI_NO_COMPARE] = {0, "no-compare", NULL, K_FLAG, 0, 0, NULL, NULL, G_BENCH,
                        "batching only (skip the --no-batching runs)"},
    [CLI_ROUNDS] = {0, "rounds", "R", K_INT, 1, 1000, NULL, NULL, G_BENCH,
                    "timed rounds (best of)"},
    [CLI_IDLE_CONNS] = {0, "idle", "N", K_INT, 0, 1000, NULL, NULL, G_BENCH,
                        "attackers that connect and never send"},
    [CLI_PIPELINERS] = {0, "pipeliners", "N", K_INT, 0, 40, NULL, NULL, G_BENCH,
                        "attackers that flood VERIFYs without reading replies"},
    [CLI_GARBAGE] = {0, "garbage", "N", K_INT, 0, 40, NULL, NULL, G_BENCH,
                     "attackers that send random bytes"},
    [CLI_LOG] = {0, "log", "FILE", K_STR, 0, 0, NULL, "none", G_BENCH,
                 "keep the server's log of the attack run in FILE"},

    [CLI_TYPE] = {0, "type", "TYPE", K_CUSTOM, 0, 0, parse_type, "f32", G_COMMAND,
                  "weight type: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k "
                  "or q6_k"},
    [CLI_RANDOM_SHAPE] = {0, "random-shape", "S", K_STR, 0, 0, NULL, NULL, G_COMMAND,
                          "random N(0, 0.02) weights with the shape of llama2.c's stories model "
                          "S: 15M (dim 288, 6 layers), 42M (dim 512, 8 layers) or 110M (dim 768, "
                          "12 layers); marked synthetic, for speed only"},
    [CLI_VOCAB] = {0, "vocab", "N", K_INT, 3, 4194304.0, NULL, NULL, G_COMMAND,
                   "vocabulary size for --random-shape; the tokenizer must have exactly N "
                   "tokens"},
    [CLI_OUTPUT_TOKENS] = {0, "output-tokens", "FILE", K_STR, 0, 0, NULL, NULL, G_COMMAND,
                           "keep only these tokens in the classifier (a draft vocabulary: token "
                           "ids separated by white space, any order; '#' starts a comment); "
                           "every other token gets probability 0"},
    [CLI_NO_BOS] = {0, "no-bos", NULL, K_FLAG, 0, 0, NULL, NULL, G_COMMAND,
                    "do not start with BOS (GGUF vocabularies add it only if their "
                    "add_bos_token says so)"},
    [CLI_SPECIAL] = {0, "special", NULL, K_FLAG, 0, 0, NULL, NULL, G_COMMAND,
                     "text of special tokens (<|im_start|>, ...) becomes their ids (llama.cpp's "
                     "parse_special; byte-level BPE vocabularies)"},
    [CLI_PIECES] = {0, "pieces", NULL, K_FLAG, 0, 0, NULL, NULL, G_COMMAND,
                    "one token per line: id, a tab, and the piece's text (U+2581 shows a space, "
                    "control characters and bytes outside UTF-8 are escaped)"},

    [CLI_THREADS] = {'t', "threads", "N", K_INT, 0, 1024, NULL, NULL, G_THREADS,
                     "threads per model; 0 = all CPUs, the default of every command: results "
                     "are bit-identical for any count, so the default only buys speed"},
    [CLI_SIMD] = {0, "simd", "LEVEL", K_CUSTOM, 0, 0, parse_simd, "auto", G_THREADS,
                  "auto, scalar, avx2 or avx512 (auto: the best the CPU has)"},
    [CLI_NUMERICS] = {0, "numerics", "MODE", K_CUSTOM, 0, 0, parse_numerics, "default",
                      G_THREADS,
                      "default, or ggml: llama.cpp's CPU rounding bit for bit (its greedy "
                      "tokens exactly; llama models with f16, q8_0 or q4_1 matrices; several "
                      "times slower)"},
    [CLI_LOAD] = {0, "load", "MODE", K_CUSTOM, 0, 0, parse_load, "auto", G_THREADS,
                  "how a model file comes into memory: mmap (mapped: shared, read as used), "
                  "copy (read into private memory with huge pages: faster decoding) or auto "
                  "(copy for files of 16 MiB or more when huge pages and the memory are "
                  "there); the results are the same"},

    [CLI_OUTPUT] = {'o', "output", "PATH", K_STR, 0, 0, NULL, NULL, G_OUTPUT,
                    "output file"},
    [CLI_JSON] = {0, "json", NULL, K_FLAG, 0, 0, NULL, NULL, G_OUTPUT,
                  "print one JSON document instead"},
    [CLI_JSONL] = {0, "jsonl", NULL, K_FLAG, 0, 0, NULL, NULL, G_OUTPUT,
                   "print JSON Lines instead: one JSON object per line, as each is ready"},
    [CLI_EVENTS] = {0, "events", NULL, K_FLAG, 0, 0, NULL, NULL, G_OUTPUT,
                    "with --json: add a per-token record array"},
    [CLI_COSINE] = {0, "cosine", NULL, K_FLAG, 0, 0, NULL, NULL, G_OUTPUT,
                    "instead, print the cosine similarity of the first text with each of the "
                    "others"},

    [CLI_LISTEN] = {0, "listen", "[HOST:]PORT", K_STR, 0, 0, NULL, NULL, G_SERVER,
                    "instead of one prompt, serve an OpenAI-compatible HTTP API (POST "
                    "/v1/chat/completions and /v1/completions, streaming or not; GET /v1/models, "
                    "/health) until SIGINT/SIGTERM; host 127.0.0.1 unless given, port 0 = any "
                    "(see --port-file); docs/openai.md"},
    [CLI_MAX_QUEUE] = {0, "max-queue", "N", K_INT, 0, 1024, NULL, NULL, G_SERVER,
                       "with --listen: requests that may wait while one generates (one model, "
                       "one request at a time); more are answered 503"},
};

void cli_texts_free(cli_texts *t) {
    for (int i = 0; i < t->n; i++) free(t->owned[i]);
    memset(t, 0, sizeof *t);
}

const char *cli_texts_last(const cli_texts *t, const char *def) {
    return t->n ? t->v[t->n - 1] : def;
}

char *cli_read_stdin(const char *cmd, size_t *len) {
    const size_t max = (size_t)UHLM_INPUT_MAX_MB << 20;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap + 1);
    if (!s) {
        fprintf(stderr, "uhlm %s: out of memory reading standard input\n", cmd);
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *ns = cap < max ? realloc(s, cap * 2 + 1) : NULL;
            if (!ns) {
                fprintf(stderr, "uhlm %s: standard input is over %d MiB or memory ran out\n",
                        cmd, UHLM_INPUT_MAX_MB);
                free(s);
                return NULL;
            }
            s = ns;
            cap *= 2;
        }
        size_t k = fread(s + n, 1, cap - n, stdin);
        n += k;
        if (k == 0) break;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "uhlm %s: error reading standard input\n", cmd);
        free(s);
        return NULL;
    }
    s[n] = '\0';
    if (len) *len = n;
    return s;
}

/* Where (and whether) a spelling names an option of this command. */
static const cli_arg *find_arg(const cli_arg *args, size_t n, const char *a) {
    for (size_t i = 0; i < n; i++) {
        const opt_def *d = &table[args[i].id];
        if (args[i].alias && !strcmp(a, args[i].alias)) return &args[i];
        if (d->short_name && a[0] == '-' && a[1] == d->short_name && a[2] == '\0')
            return &args[i];
        if (a[0] == '-' && a[1] == '-') {
            if (!strcmp(a + 2, d->name)) return &args[i];
        }
    }
    return NULL;
}

static int add_text(const char *cmd, const char *opt, cli_texts *t, const char *v, char *owned) {
    /* a text read whole loses one final newline, as llama.cpp's -f does: files end in one */
    size_t n = owned ? strlen(owned) : 0;
    if (n && owned[n - 1] == '\n') owned[n - 1] = '\0';
    if (t->n == CLI_TEXTS_MAX) {
        fprintf(stderr, "uhlm %s: %s given more than %d times\n", cmd, opt, CLI_TEXTS_MAX);
        free(owned);
        return -1;
    }
    t->owned[t->n] = owned;
    t->v[t->n++] = owned ? owned : v;
    return 0;
}

/* Stores v into the bound variable; after the message, -1 for a usage error and -2 for input
 * that could not be read. */
static int set_value(const char *cmd, const char *opt, const cli_arg *b, const char *v) {
    const opt_def *d = &table[b->id];
    double lo = d->lo, hi = d->hi;
    if (b->lo != 0 || b->hi != 0) {
        lo = b->lo;
        hi = b->hi;
    }
    if (b->raw) *b->raw = v;
    if (b->many && d->kind == K_STR) return add_text(cmd, opt, b->dst, v, NULL);
    switch (d->kind) {
    case K_FLAG:
        *(int *)b->dst = 1;
        return 0;
    case K_STR:
        *(const char **)b->dst = v;
        return 0;
    case K_INT:
        return cli_parse_int(cmd, opt, v, (long)lo, (long)hi, b->dst);
    case K_U64:
        return cli_parse_u64(cmd, opt, v, b->dst);
    case K_FLOAT:
        return cli_parse_float(cmd, opt, v, lo, hi, b->dst);
    case K_TEXT:
        if (!strcmp(v, "-")) {
            char *s = cli_read_stdin(cmd, NULL);
            return s ? add_text(cmd, opt, b->dst, NULL, s) : -2;
        }
        return add_text(cmd, opt, b->dst, v, NULL);
    case K_TEXT_FILE: {
        char *s = NULL;
        size_t len = 0;
        uhlm_error err = {{0}};
        if (uhlm_read_file(v, "prompt", &s, &len, &err) != 0) {
            fprintf(stderr, "uhlm %s: %s: %s\n", cmd, opt, err.msg);
            return -2;
        }
        return add_text(cmd, opt, b->dst, NULL, s);
    }
    case K_CUSTOM: {
        char why[256] = "";
        if (d->parse(v, b->dst, why, sizeof why) == 0) return 0;
        fprintf(stderr, "uhlm %s: invalid value for %s: '%s' (%s)\n", cmd, opt, v, why);
        return -1;
    }
    }
    return -1;
}

/* The default as --help shows it: the binding's text, else the table's (for values that
 * cannot say it: 0 meaning "the model's context", NaN meaning "as the uplink"), else the
 * variable's value before parsing (nothing for flags and unset names). */
static int default_text(const cli_arg *b, char *buf, size_t cap) {
    const opt_def *d = &table[b->id];
    buf[0] = '\0';
    if (b->def) return snprintf(buf, cap, "%s", b->def) > 0;
    if (d->def) return snprintf(buf, cap, "%s", d->def) > 0;
    if (b->many) return 0;
    switch (d->kind) {
    case K_STR: {
        const char *s = *(const char *const *)b->dst;
        if (s) snprintf(buf, cap, "%s", s);
        break;
    }
    case K_INT:
        if (b->id == CLI_THREADS && *(const long *)b->dst == 0) snprintf(buf, cap, "all CPUs");
        else snprintf(buf, cap, "%ld", *(const long *)b->dst);
        break;
    case K_U64:
        snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)b->dst);
        break;
    case K_FLOAT: {
        double x = *(const double *)b->dst;
        if (!isnan(x)) snprintf(buf, cap, "%g", x);
        break;
    }
    default:
        break;
    }
    return buf[0] != '\0';
}

/* Writes text from column col, wrapped at 79 columns with later lines at column indent. */
static void wrap(FILE *f, const char *text, int col, int indent) {
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        int w = (int)(e - p);
        if (col > indent && col + 1 + w > 79) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)w, f);
        col += w;
        p = e;
    }
    fputc('\n', f);
}

void cli_print_help(FILE *f, const cli_command *c, const cli_arg *args, size_t n_args) {
    fprintf(f, "usage: uhlm %s [options]%s%s\n\n", c->name, c->synopsis ? " " : "",
            c->synopsis ? c->synopsis : "");
    if (c->about) fprintf(f, "%s\n", c->about);
    for (int g = 0; g < G_N; g++) {
        int any = 0;
        for (size_t i = 0; i < n_args; i++) {
            const opt_def *d = &table[args[i].id];
            if ((int)d->group != g) continue;
            if (!any) fprintf(f, "\n%s:\n", group_title[g]);
            any = 1;
            char names[128];
            const char *alias = args[i].alias ? args[i].alias : "";
            char short_name[4] = "";
            if (d->short_name) snprintf(short_name, sizeof short_name, "-%c", d->short_name);
            /* every name is a short literal of the table, so this never truncates */
            snprintf(names, sizeof names, "  %s%s%s%s--%s%s%s", alias, *alias ? ", " : "",
                     short_name, *short_name ? ", " : "", d->name, d->meta ? " " : "",
                     d->meta ? d->meta : "");
            const int indent = 28;
            int col = fprintf(f, "%s", names);
            if (col >= indent - 1) {
                fprintf(f, "\n%*s", indent, "");
            } else {
                fprintf(f, "%*s", indent - col, "");
            }
            char dbuf[128], text[1024];
            const char *h = args[i].help ? args[i].help : d->help;
            double lo = d->lo, hi = d->hi;
            if (args[i].lo != 0 || args[i].hi != 0) {
                lo = args[i].lo;
                hi = args[i].hi;
            }
            int n = snprintf(text, sizeof text, "%s", h);
            if ((d->kind == K_INT || d->kind == K_FLOAT) && n > 0 && (size_t)n < sizeof text)
                n += snprintf(text + n, sizeof text - (size_t)n, " [%.10g, %.10g]", lo, hi);
            if (default_text(&args[i], dbuf, sizeof dbuf) && n > 0 && (size_t)n < sizeof text)
                snprintf(text + n, sizeof text - (size_t)n, " (default %s)", dbuf);
            wrap(f, text, indent, indent);
        }
    }
    fprintf(f, "\nGeneral:\n  -h, --help                show this help\n"
               "  --version                 print the version\n");
    if (c->epilog) fprintf(f, "\n%s\n", c->epilog);
}

int cli_parse(const cli_command *c, const cli_arg *args, size_t n_args, int argc, char **argv,
              int *first_pos) {
    const char *cmd = c->name;
    if (first_pos) *first_pos = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_print_help(stdout, c, args, n_args);
            return CLI_EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            printf("uhlm %s\n", uhlm_version());
            return CLI_EXIT_OK;
        }
        if (c->positional && !strcmp(a, "--")) {
            if (first_pos) *first_pos = i + 1;
            return CLI_CONTINUE;
        }
        const cli_arg *b = find_arg(args, n_args, a);
        if (!b) {
            if (c->positional && (a[0] != '-' || a[1] == '\0')) {
                if (first_pos) *first_pos = i;
                return CLI_CONTINUE;
            }
            fprintf(stderr, "uhlm %s: unknown option '%s' (see 'uhlm %s --help')\n", cmd, a, cmd);
            return CLI_USAGE;
        }
        const char *v = NULL;
        if (table[b->id].kind != K_FLAG && !(v = cli_need_arg(cmd, argc, argv, &i)))
            return CLI_USAGE;
        int r = set_value(cmd, a, b, v);
        if (r != 0) return r == -2 ? CLI_FAILED : CLI_USAGE;
    }
    return CLI_CONTINUE;
}
