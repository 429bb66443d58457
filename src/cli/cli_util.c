/* cli_util.c: option parsing and model lookup shared by the subcommands (see cli.h). */
#include "cli/cli.h"

#include <cjson/cJSON.h>
#include "uhlm/payload.h"
#include "uhlm/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_parse_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "uhlm %s: invalid value for %s: '%s' (expected an integer in [%ld, %ld])\n",
                cmd, opt, val, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_int_list(const char *cmd, const char *opt, const char *val, long lo, long hi,
                       int *out, int cap) {
    int n = 0;
    const char *p = val;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < lo || v > hi || (*end && *end != ',') || n == cap) {
            fprintf(stderr,
                    "uhlm %s: invalid value for %s: '%s' (expected up to %d comma-separated "
                    "integers in [%ld, %ld])\n",
                    cmd, opt, val, cap, lo, hi);
            return -1;
        }
        out[n++] = (int)v;
        if (!*end) return n;
        p = end + 1;
    }
}

int cli_parse_u64(const char *cmd, const char *opt, const char *val, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    if (val[0] == '-') {
        fprintf(stderr, "uhlm %s: invalid value for %s: '%s' (expected a non-negative integer)\n",
                cmd, opt, val);
        return -1;
    }
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end != '\0') {
        fprintf(stderr, "uhlm %s: invalid value for %s: '%s' (expected a non-negative integer)\n",
                cmd, opt, val);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *val, double lo, double hi,
                    double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "uhlm %s: invalid value for %s: '%s' (expected a number in [%g, %g])\n",
                cmd, opt, val, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_need_arg(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "uhlm %s: option %s needs a value (see 'uhlm %s --help')\n", cmd, argv[*i],
                cmd);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

const char *cli_find_model_file(const char *name, char *buf, size_t cap) {
    if (strchr(name, '/') || access(name, F_OK) == 0) {
        snprintf(buf, cap, "%s", name);
        return buf;
    }
    const char *dirs[3] = {getenv("UHLM_MODELS"), "models", "../shared/models"};
    for (int i = 0; i < 3; i++) {
        if (!dirs[i] || !dirs[i][0]) continue;
        snprintf(buf, cap, "%s/%s", dirs[i], name);
        if (access(buf, F_OK) == 0) return buf;
    }
    snprintf(buf, cap, "%s", name); /* let the loader report "cannot open" with the name given */
    return buf;
}

int cli_check_default_model(const char *cmd, const char *role, const char *name,
                            const char *path) {
    const int slm = !strcmp(name, UHLM_DEFAULT_SLM);
    if ((!slm && strcmp(name, UHLM_DEFAULT_LLM) != 0) || access(path, F_OK) == 0) return 0;
    const int pair = role && (!strcmp(role, "SLM") || !strcmp(role, "LLM"));
    const char *env = getenv("UHLM_MODELS");
    char cwd[512];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
    fprintf(stderr,
            "uhlm %s: %s%sdefault %s model %s not found (looked in $UHLM_MODELS%s%s%s, "
            "%s/models and %s/../shared/models). Run scripts/setup.sh in the uhlm checkout (it "
            "fetches SmolLM2 into models/, beside the committed drafter, and checks both), then "
            "run uhlm from the checkout or set UHLM_MODELS to its models/ folder; or name other "
            "models, e.g. the TinyStories %s: %s\n",
            cmd, role ? role : "", role ? ": " : "", slm ? "device" : "server", name,
            env && env[0] ? " = " : " (", env ? (env[0] ? env : "empty") : "unset",
            env && env[0] ? "" : ")",
            cwd, cwd, pair ? "pair" : "model",
            pair ? UHLM_TINYSTORIES_PAIR : slm ? UHLM_TINYSTORIES_SLM : UHLM_TINYSTORIES_LLM);
    return -1;
}

void cli_pair_hint(const char *cmd, const char *slm_arg, const char *llm_arg) {
    const int slm_def = !strcmp(slm_arg, UHLM_DEFAULT_SLM);
    const int llm_def = !strcmp(llm_arg, UHLM_DEFAULT_LLM);
    if (slm_def == llm_def) return;
    fprintf(stderr,
            "uhlm %s: the %s is the default %s, which goes with the default %s %s; name both "
            "models of another pair, e.g. the TinyStories pair: %s\n",
            cmd, slm_def ? "SLM" : "LLM", slm_def ? UHLM_DEFAULT_SLM : UHLM_DEFAULT_LLM,
            slm_def ? "LLM" : "SLM", slm_def ? UHLM_DEFAULT_LLM : UHLM_DEFAULT_SLM,
            UHLM_TINYSTORIES_PAIR);
}

const char *cli_model_tokenizer_path(const char *mpath, const char *tok_arg, char *buf,
                                     size_t cap) {
    if (tok_arg) return cli_find_model_file(tok_arg, buf, cap);
    return cli_is_gguf(mpath) ? NULL : cli_find_model_file(UHLM_DEFAULT_TOKENIZER, buf, cap);
}

int cli_is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    if (f) fclose(f);
    return yes;
}

int cli_text_init(cli_text *t, int echo) {
    t->len = 0;
    t->cap = 4096;
    t->echo = echo;
    t->buf = malloc(t->cap);
    if (!t->buf) return -1;
    t->buf[0] = '\0';
    return 0;
}

int cli_text_add(cli_text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap * 2 + n;
        char *nb = realloc(t->buf, cap);
        if (!nb) return -1;
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
    if (t->echo) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    }
    return 0;
}

int cli_text_end(cli_text *t, const char *s, size_t n) {
    if (cli_text_add(t, s, n) != 0) return -1;
    if (t->echo) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    return 0;
}

void cli_text_free(cli_text *t) {
    free(t->buf);
    t->buf = NULL;
}

uhlm_model *cli_load_model(const char *cmd, const char *arg, const char *tok_arg, uhlm_load_mode load,
                           const char *role) {
    char mpath[1024], tpath[1024];
    uhlm_error err = {{0}};
    cli_find_model_file(arg, mpath, sizeof mpath);
    if (cli_check_default_model(cmd, role, arg, mpath) != 0) return NULL;
    const char *sep = role ? ": " : "", *sp = role ? " " : "";
    if (!role) role = "";
    const char *tp = tok_arg ? cli_find_model_file(tok_arg, tpath, sizeof tpath) : NULL;
    uhlm_model_params mp = uhlm_model_default_params();
    mp.load = load;
    uhlm_model *m = uhlm_model_load_params(mpath, tp, &mp, &err);
    if (!m) {
        fprintf(stderr, "uhlm %s: %s%s%s\n", cmd, role, sep, err.msg);
        return NULL;
    }
    if (!uhlm_model_tokenizer(m)) {
        /* llama2.c files carry no vocabulary */
        uhlm_tokenizer *t = uhlm_tokenizer_load_bin(
            cli_find_model_file(UHLM_DEFAULT_TOKENIZER, tpath, sizeof tpath), 0, &err);
        if (!t || uhlm_model_attach_tokenizer(m, t, &err) != 0) {
            fprintf(stderr, "uhlm %s: %s%s%s is a llama2.c file and needs a tokenizer (-z): %s\n",
                    cmd, role, sp, mpath, err.msg);
            uhlm_model_free(m);
            return NULL;
        }
    }
    return m;
}

int cli_print_json(const char *cmd, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "uhlm %s: out of memory\n", cmd);
        return -1;
    }
    puts(s);
    cJSON_free(s);
    return 0;
}

int cli_check_payload(const char *cmd, const struct uhlm_payload_spec *p, const uhlm_model *slm) {
    uhlm_error err = {{0}};
    if (uhlm_payload_check(p, uhlm_model_config(slm)->vocab_size, &err) == 0) return 0;
    fprintf(stderr, "uhlm %s: --payload: %s (SLM %s)\n", cmd, err.msg, uhlm_model_path(slm));
    return -1;
}
