/* cmd_convert.c: `uhlm convert`, writes a GGUF `llama` file from a model (llama2.c or GGUF) or
 * from random weights with the real shapes of llama2.c's stories15M/42M/110M.
 *
 * Random models exist so that speed can be measured at realistic sizes on machines without the
 * real checkpoints; they are marked synthetic in their metadata (general.name and
 * uhlm.synthetic) so no quality number is ever reported for them. They are generated tensor by
 * tensor straight into the requested type, so memory holds one copy of the output weights plus
 * one F32 tensor of scratch. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "uhlm/sampler.h"

static const cli_command convert_cmd = {
    "convert", "(-m MODEL | --random-shape S -z TOKENIZER) -o OUT.gguf",
    "Writes a GGUF file (llama architecture, loadable by llama.cpp) with the vocabulary\n"
    "embedded, from a llama2.c checkpoint (v0, v1, v2) or GGUF file, or from random weights.",
    "--type: norms stay f32. The 32-element block types keep in f32 any matrix whose rows\n"
    "are not a multiple of 32 (listed in the key uhlm.f32_fallback); the K types need\n"
    "multiples of 256 and write other matrices as llama.cpp does: q4_k as q5_0, q5_k as\n"
    "q5_1, q6_k as q8_0, q2_k/q3_k as q4_0, or f32 (listed in uhlm.type_fallback). A matrix\n"
    "already of TYPE keeps its bytes; any other, e.g. Q4_1 to Q8_0, goes through f32 (each\n"
    "row dequantized, then quantized to TYPE). Only f32 is then lossless: f16 rounds the\n"
    "dequantized values to 11 significant bits (about 30% of SmolLM2's Q4_1 weights\n"
    "change, by at most 2^-11 relative), and Q4_1 to Q8_0 adds Q8_0's rounding on top of\n"
    "Q4_1's. A summary goes to stderr.",
    0};

typedef struct {
    const char *name;
    int dim, hidden, layers, heads, kv_heads, seq_len;
} shape;

/* llama2.c's tinyllamas (its README's model table and the checkpoints' headers) */
static const shape shapes[] = {
    {"15M", 288, 768, 6, 6, 6, 256},
    {"42M", 512, 1376, 8, 8, 8, 1024},
    {"110M", 768, 2048, 12, 12, 12, 1024},
};

/* N(0, sd^2) by Box-Muller on the project's PRNG, so a seed gives the same weights everywhere. */
static void fill_normal(uhlm_rng *r, float *x, size_t n, double sd) {
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - uhlm_rng_uniform(r); /* (0, 1]: log is finite */
        double u2 = uhlm_rng_uniform(r);
        double rad = sqrt(-2.0 * log(u1)) * sd;
        x[i] = (float)(rad * cos(two_pi * u2));
        if (i + 1 < n) x[i + 1] = (float)(rad * sin(two_pi * u2));
    }
}

/* The random model's weights: one buffer per matrix in the output type, plus one vector of
 * ones shared by every norm. */
typedef struct {
    void **bufs;
    size_t n, cap;
} bufset;

static void *bufset_add(bufset *b, size_t bytes) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 128;
        void **np = realloc(b->bufs, nc * sizeof *np);
        if (!np) return NULL;
        b->bufs = np;
        b->cap = nc;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) b->bufs[b->n++] = p;
    return p;
}

static void bufset_free(bufset *b) {
    for (size_t i = 0; i < b->n; i++) free(b->bufs[i]);
    free(b->bufs);
}

/* Generates rows x cols random weights into a new buffer of type t; scratch holds at least
 * rows*cols floats (unused when t is F32: the values are generated in place). */
static int random_matrix(bufset *b, uhlm_rng *r, uhlm_type t, int64_t rows, int64_t cols,
                         float *scratch, uhlm_tensor *out) {
    t = uhlm_type_fallback(t, cols); /* what the GGUF writer would turn it into anyway */
    size_t row_bytes = uhlm_type_bytes(t, cols);
    uint8_t *dst = bufset_add(b, row_bytes * (size_t)rows);
    if (!dst) return -1;
    size_t n = (size_t)rows * (size_t)cols;
    float *src = t == UHLM_TYPE_F32 ? (float *)dst : scratch;
    fill_normal(r, src, n, 0.02);
    if (t != UHLM_TYPE_F32)
        for (int64_t i = 0; i < rows; i++)
            uhlm_quantize_row(t, src + (size_t)i * (size_t)cols, dst + (size_t)i * row_bytes, cols);
    memset(out, 0, sizeof *out);
    out->type = t;
    out->rows = rows;
    out->cols = cols;
    out->data = dst;
    return 0;
}

static int build_random(uhlm_model *m, const shape *s, int vocab, uint64_t seed, uhlm_type t,
                        bufset *b) {
    uhlm_config *p = &m->cfg;
    p->dim = s->dim;
    p->hidden_dim = s->hidden;
    p->n_layers = s->layers;
    p->n_heads = s->heads;
    p->n_kv_heads = s->kv_heads;
    p->vocab_size = vocab;
    p->seq_len = s->seq_len;
    p->head_dim = s->dim / s->heads;
    p->rope_theta = 10000.0f;
    p->norm_eps = 1e-5f;
    p->shared_classifier = 1;
    m->synthetic = 1;
    m->wtype = t;
    m->format = UHLM_FORMAT_GGUF;
    m->w.layers = calloc((size_t)s->layers, sizeof *m->w.layers);
    size_t biggest = (size_t)vocab * (size_t)s->dim;
    size_t ffn = (size_t)s->hidden * (size_t)s->dim;
    if (ffn > biggest) biggest = ffn;
    float *scratch = t == UHLM_TYPE_F32 ? NULL : malloc(biggest * sizeof *scratch);
    float *ones = bufset_add(b, (size_t)s->dim * sizeof *ones);
    if (!m->w.layers || (t != UHLM_TYPE_F32 && !scratch) || !ones) {
        free(scratch);
        return -1;
    }
    for (int i = 0; i < s->dim; i++) ones[i] = 1.0f;
    uhlm_rng r;
    uhlm_rng_seed(&r, seed);
    int D = s->dim, H = s->hidden, KV = s->kv_heads * p->head_dim;
    int rc = random_matrix(b, &r, t, vocab, D, scratch, &m->w.tok_embd);
    for (int l = 0; l < s->layers && rc == 0; l++) {
        uhlm_layer *L = &m->w.layers[l];
        L->attn_norm = ones;
        L->ffn_norm = ones;
        rc = random_matrix(b, &r, t, D, D, scratch, &L->wq) ||
             random_matrix(b, &r, t, KV, D, scratch, &L->wk) ||
             random_matrix(b, &r, t, KV, D, scratch, &L->wv) ||
             random_matrix(b, &r, t, D, D, scratch, &L->wo) ||
             random_matrix(b, &r, t, H, D, scratch, &L->w1) ||
             random_matrix(b, &r, t, D, H, scratch, &L->w2) ||
             random_matrix(b, &r, t, H, D, scratch, &L->w3)
                 ? -1
                 : 0;
    }
    free(scratch);
    m->w.out_norm = ones;
    m->w.output = m->w.tok_embd;
    return rc;
}

/* Re-opens the written file: the summary reports what is really on disk, and a writer bug
 * cannot go unnoticed. */
static int summarize(const char *out, double t0, const char *what) {
    uhlm_error err = {{0}};
    uhlm_gguf *g = uhlm_gguf_open(out, &err);
    if (!g) {
        fprintf(stderr, "uhlm convert: the written file does not read back: %s\n", err.msg);
        return 1;
    }
    uint64_t n = uhlm_gguf_n_tensors(g), data = 0, n_fb = 0;
    for (uint64_t i = 0; i < n; i++) data += uhlm_gguf_tensor_at(g, i)->nbytes;
    const uhlm_gguf_kv *fb = uhlm_gguf_find_kv(g, "uhlm.f32_fallback");
    if (fb && fb->type == UHLM_GGUF_ARRAY) n_fb = fb->arr_n;
    const uhlm_gguf_kv *fk = uhlm_gguf_find_kv(g, "uhlm.type_fallback");
    if (fk && fk->type == UHLM_GGUF_ARRAY) {
        /* named (the first few), since a K type silently not applying would surprise */
        fprintf(stderr, "uhlm convert: %llu matrices have rows that are not a multiple of 256 and "
                        "were written in another type:",
                (unsigned long long)fk->arr_n);
        for (uint64_t i = 0; i < fk->arr_n && i < 4 && fk->strs; i++) {
            char nm[128];
            snprintf(nm, sizeof nm, "%.*s", (int)(fk->strs[i].len < 127 ? fk->strs[i].len : 127),
                     fk->strs[i].s);
            const uhlm_gguf_tensor *t = uhlm_gguf_find_tensor(g, nm);
            fprintf(stderr, " %s (%s)", nm, t ? uhlm_type_name(t->type) : "?");
        }
        fprintf(stderr, "%s\n", fk->arr_n > 4 ? " ..." : "");
    }
    FILE *f = fopen(out, "rb");
    long size = -1;
    if (f) {
        if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
        fclose(f);
    }
    fprintf(stderr, "uhlm convert: wrote %s (%s): %llu tensors, %.2f MB of weights, %.2f MB file, "
                    "%.2f s\n",
            out, what, (unsigned long long)n, (double)data / 1e6, (double)size / 1e6,
            uhlm_now() - t0);
    if (n_fb)
        fprintf(stderr, "uhlm convert: %llu matrices kept in f32 (rows not a multiple of 32)\n",
                (unsigned long long)n_fb);
    uhlm_gguf_close(g);
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* --output-tokens FILE: token ids separated by white space, '#' to the line's end a comment.
 * Sorted here; a repeated id is refused, as it most likely means a wrong list. */
static int keep_output_tokens(uhlm_model *m, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "uhlm convert: cannot open --output-tokens %s: %s\n", path, strerror(errno));
        return -1;
    }
    const int V = uhlm_model_n_vocab(m);
    int32_t *ids = malloc((size_t)V * sizeof *ids);
    int n = 0, rc = -1, line = 1;
    if (!ids) {
        fprintf(stderr, "uhlm convert: out of memory\n");
        fclose(f);
        return -1;
    }
    char tok[32];
    int c, len = 0;
    for (;;) {
        c = fgetc(f);
        if (c == '#')
            while (c != EOF && c != '\n') c = fgetc(f);
        if (c == EOF || isspace(c)) {
            if (len > 0) {
                tok[len] = '\0';
                char *end;
                errno = 0;
                long v = strtol(tok, &end, 10);
                if (*end || errno || v < 0 || v >= V) {
                    fprintf(stderr, "uhlm convert: %s line %d: '%s' is not a token id in [0, %d)\n",
                            path, line, tok, V);
                    goto done;
                }
                if (n == V) {
                    fprintf(stderr, "uhlm convert: %s lists more ids than the vocabulary has (%d)\n",
                            path, V);
                    goto done;
                }
                ids[n++] = (int32_t)v;
                len = 0;
            }
            if (c == '\n') line++;
            if (c == EOF) break;
            continue;
        }
        if (len + 1 >= (int)sizeof tok) {
            fprintf(stderr, "uhlm convert: %s line %d: a token id is too long\n", path, line);
            goto done;
        }
        tok[len++] = (char)c;
    }
    if (ferror(f)) {
        fprintf(stderr, "uhlm convert: error reading %s\n", path);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "uhlm convert: %s lists no token ids\n", path);
        goto done;
    }
    qsort(ids, (size_t)n, sizeof *ids, cmp_i32);
    for (int i = 1; i < n; i++)
        if (ids[i] == ids[i - 1]) {
            fprintf(stderr, "uhlm convert: %s lists token %d twice\n", path, (int)ids[i]);
            goto done;
        }
    uhlm_error err = {{0}};
    if (uhlm_model_keep_output_tokens(m, ids, n, &err) != 0) {
        fprintf(stderr, "uhlm convert: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "uhlm convert: the classifier keeps %d of %d tokens (%s)\n", n, V, path);
    rc = 0;
done:
    free(ids);
    fclose(f);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    const char *model_arg = NULL, *tok_arg = NULL, *out = NULL, *shape_arg = NULL;
    uhlm_type type = UHLM_TYPE_F32;
    uint64_t seed = 42;
    long vocab = 32000;
    int vocab_given = 0, seed_given = 0;
    const char *seed_raw = NULL, *vocab_raw = NULL, *ids_arg = NULL;
    const cli_arg args[] = {
        {.id = CLI_MODEL, .dst = &model_arg,
         .help = "llama2.c checkpoint (v0, v1, v2) or GGUF file to convert"},
        {.id = CLI_TOKENIZER, .dst = &tok_arg,
         .help = "llama2.c tokenizer.bin; required for llama2.c models and random shapes (a "
                 "GGUF input already carries its vocabulary)"},
        {.id = CLI_OUTPUT, .dst = &out, .help = "the GGUF file to write"},
        CLI_ARG(CLI_TYPE, &type),
        CLI_ARG(CLI_RANDOM_SHAPE, &shape_arg),
        {.id = CLI_SEED, .dst = &seed, .raw = &seed_raw, .help = "random seed for --random-shape"},
        {.id = CLI_VOCAB, .dst = &vocab, .raw = &vocab_raw},
        {.id = CLI_OUTPUT_TOKENS, .dst = &ids_arg},
    };
    int prc = cli_parse(&convert_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    seed_given = seed_raw != NULL;
    vocab_given = vocab_raw != NULL;
    if (!out) {
        fprintf(stderr, "uhlm convert: -o OUT.gguf is required (see 'uhlm convert --help')\n");
        return 2;
    }
    if (!!model_arg == !!shape_arg) {
        fprintf(stderr, "uhlm convert: give exactly one of -m MODEL and --random-shape SHAPE\n");
        return 2;
    }
    if (shape_arg && ids_arg) {
        fprintf(stderr, "uhlm convert: --output-tokens applies to -m MODEL, not --random-shape\n");
        return 2;
    }
    if (model_arg && (vocab_given || seed_given)) {
        fprintf(stderr, "uhlm convert: --vocab and --seed only apply to --random-shape\n");
        return 2;
    }
    const shape *sh = NULL;
    if (shape_arg) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            if (!strcmp(shape_arg, shapes[i].name) ||
                (!strncmp(shape_arg, "stories", 7) && !strcmp(shape_arg + 7, shapes[i].name)))
                sh = &shapes[i];
        if (!sh) {
            fprintf(stderr, "uhlm convert: unknown --random-shape '%s' (15M, 42M or 110M)\n",
                    shape_arg);
            return 2;
        }
        if (!tok_arg) {
            fprintf(stderr, "uhlm convert: --random-shape needs -z TOKENIZER (GGUF embeds the "
                            "vocabulary)\n");
            return 2;
        }
    }

    double t0 = uhlm_now();
    uhlm_error err = {{0}};
    char mpath[1024], tpath[1024];
    const char *tp = tok_arg ? cli_find_model_file(tok_arg, tpath, sizeof tpath) : NULL;

    if (model_arg) {
        cli_find_model_file(model_arg, mpath, sizeof mpath);
        uhlm_model *m = uhlm_model_load(mpath, tp, &err);
        if (!m) {
            fprintf(stderr, "uhlm convert: %s\n", err.msg);
            return 1;
        }
        if (!uhlm_model_tokenizer(m)) {
            fprintf(stderr, "uhlm convert: %s has no vocabulary: give -z TOKENIZER (GGUF embeds "
                            "the vocabulary)\n", mpath);
            uhlm_model_free(m);
            return 2;
        }
        if (ids_arg && keep_output_tokens(m, ids_arg) != 0) {
            uhlm_model_free(m);
            return 1;
        }
        int rc = uhlm_gguf_save_llama(m, type, out, &err);
        char what[1200];
        snprintf(what, sizeof what, "%s from %s", uhlm_type_name(type), mpath);
        uhlm_model_free(m);
        if (rc != 0) {
            fprintf(stderr, "uhlm convert: %s\n", err.msg);
            return 1;
        }
        return summarize(out, t0, what);
    }

    uhlm_tokenizer *tok = uhlm_tokenizer_load_bin(tp, 0, &err);
    if (!tok) {
        fprintf(stderr, "uhlm convert: %s\n", err.msg);
        return 1;
    }
    if (uhlm_tokenizer_vocab_size(tok) != vocab) {
        fprintf(stderr, "uhlm convert: %s has %d tokens but the random model's vocabulary is %ld "
                        "(set --vocab to match)\n",
                tp, uhlm_tokenizer_vocab_size(tok), vocab);
        uhlm_tokenizer_free(tok);
        return 2;
    }
    uhlm_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.path, sizeof m.path, "synthetic-random-stories%s", sh->name);
    m.tok = tok;
    bufset bufs = {NULL, 0, 0};
    int rc = build_random(&m, sh, (int)vocab, seed, type, &bufs);
    if (rc != 0) {
        fprintf(stderr, "uhlm convert: out of memory generating random weights\n");
    } else if ((rc = uhlm_gguf_save_llama(&m, type, out, &err)) != 0) {
        fprintf(stderr, "uhlm convert: %s\n", err.msg);
    }
    bufset_free(&bufs);
    free(m.w.layers);
    uhlm_tokenizer_free(tok);
    if (rc != 0) return 1;
    char what[256];
    snprintf(what, sizeof what, "%s, synthetic random weights, shape stories%s, seed %llu",
             uhlm_type_name(type), sh->name, (unsigned long long)seed);
    return summarize(out, t0, what);
}
