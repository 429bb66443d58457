/* cmd_info.c: `uhlm info`, what a model file is and whether this engine runs it.
 *
 * The file's own metadata (GGUF keys and tensor list, or the llama2.c header) is reported
 * first and does not depend on the model loading; the shapes and the vocabulary come from
 * loading it, and a file that does not load is reported with the loader's reason (exit 1). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "uhlm/chat.h"
#include "model/format/gguf.h"
#include "model/model_internal.h"
#include "uhlm/model.h"
#include "uhlm/tokenizer.h"

static const cli_command info_cmd = {
    "info", NULL,
    "Describes a model file: format and version, architecture, shapes (layers, dim, FFN,\n"
    "heads, head dim, vocabulary, context, RoPE), tensor types and sizes, vocabulary\n"
    "kind and special tokens, and the chat template kind. Works on GGUF and llama2.c\n"
    "files; exits 1 (after printing what the file says) when the model does not load.",
    NULL, 0};

/* A GGUF string key as a NUL-terminated copy into buf (printable bytes only), or NULL. */
static const char *gguf_str(const uhlm_gguf *g, const char *key, char *buf, size_t cap) {
    const uhlm_gguf_kv *kv = uhlm_gguf_find_kv(g, key);
    if (!kv || kv->type != UHLM_GGUF_STRING) return NULL;
    size_t n = kv->v.str.len < cap - 1 ? (size_t)kv->v.str.len : cap - 1;
    memcpy(buf, kv->v.str.s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 && buf[i] != '\t') buf[i] = ' ';
    return buf;
}

static int gguf_id(const uhlm_gguf *g, const char *key) {
    int64_t v;
    uhlm_error err;
    if (!uhlm_gguf_find_kv(g, key) || uhlm_gguf_get_int(g, key, &v, &err) != 0) return -1;
    return v >= 0 && v <= (1 << 30) ? (int)v : -1;
}

typedef struct {
    const char *name;
    int count;
    uint64_t bytes;
} type_count;

typedef struct {
    type_count t[32];
    int n;
    uint64_t n_tensors, bytes;
} type_table;

static void count_type(type_table *tt, const char *name, uint64_t bytes) {
    tt->n_tensors++;
    tt->bytes += bytes;
    for (int i = 0; i < tt->n; i++)
        if (!strcmp(tt->t[i].name, name)) {
            tt->t[i].count++;
            tt->t[i].bytes += bytes;
            return;
        }
    if (tt->n < 32) tt->t[tt->n++] = (type_count){name, 1, bytes};
}

static void count_mat(type_table *tt, const uhlm_tensor *w) {
    count_type(tt, uhlm_type_name(w->type), (uint64_t)uhlm_tensor_nbytes(w));
}

/* llama2.c files have no tensor list: count the matrices and norms the loader mapped. */
static void count_llama2c(type_table *tt, const uhlm_model *m) {
    const uhlm_config *p = uhlm_model_config(m);
    uint64_t norm = (uint64_t)p->dim * 4u;
    count_mat(tt, &m->w.tok_embd);
    if (!p->shared_classifier) count_mat(tt, &m->w.output);
    count_type(tt, "f32", norm);
    for (int l = 0; l < p->n_layers; l++) {
        const uhlm_layer *L = &m->w.layers[l];
        const uhlm_tensor *mats[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int k = 0; k < 7; k++) count_mat(tt, mats[k]);
        count_type(tt, "f32", norm);
        count_type(tt, "f32", norm);
    }
}

static const char *vocab_kind(const char *model) {
    if (!model) return "none";
    if (!strcmp(model, "llama")) return "SPM";
    if (!strcmp(model, "gpt2")) return "BPE";
    return model;
}

/* What the file itself says, before and apart from loading it. */
typedef struct {
    char path[1024];
    uint64_t file_bytes;
    uhlm_gguf *g; /* NULL for llama2.c files */
    type_table tt;
    char arch[64], name[256], tmodel[64], pre[64];
    int bos, eos, have_meta;
} info_meta;

/* The file's size and whether it is GGUF (by its magic). Returns 0 or 1 after the message. */
static int info_probe(const char *path, uint64_t *file_bytes, uint32_t *magic) {
    uhlm_error err = {{0}};
    uhlm_mmap probe;
    if (uhlm_mmap_open(&probe, path, &err) != 0) {
        fprintf(stderr, "uhlm info: %s\n", err.msg);
        return 1;
    }
    *magic = 0;
    if (probe.size >= 4) memcpy(magic, probe.data, 4);
    *file_bytes = probe.size;
    uhlm_mmap_close(&probe);
    return 0;
}

/* A GGUF file's keys and tensor list into mi, and the keys info reports into o. */
static int info_gguf(cJSON *o, info_meta *mi) {
    uhlm_error err = {{0}};
    uhlm_gguf *g = mi->g = uhlm_gguf_open(mi->path, &err);
    if (!g) {
        fprintf(stderr, "uhlm info: %s\n", err.msg);
        return 1;
    }
    mi->have_meta = 1;
    cJSON_AddStringToObject(o, "format", "GGUF");
    cJSON_AddNumberToObject(o, "gguf_version", uhlm_gguf_version(g));
    cJSON_AddNumberToObject(o, "n_kv", (double)uhlm_gguf_n_kv(g));
    gguf_str(g, "general.architecture", mi->arch, sizeof mi->arch);
    gguf_str(g, "general.name", mi->name, sizeof mi->name);
    gguf_str(g, "tokenizer.ggml.model", mi->tmodel, sizeof mi->tmodel);
    gguf_str(g, "tokenizer.ggml.pre", mi->pre, sizeof mi->pre);
    mi->bos = gguf_id(g, "tokenizer.ggml.bos_token_id");
    mi->eos = gguf_id(g, "tokenizer.ggml.eos_token_id");
    for (uint64_t i = 0; i < uhlm_gguf_n_tensors(g); i++) {
        const uhlm_gguf_tensor *t = uhlm_gguf_tensor_at(g, i);
        count_type(&mi->tt, uhlm_type_name(t->type), t->nbytes);
    }
    const uhlm_gguf_kv *ct = uhlm_gguf_find_kv(g, "tokenizer.chat_template");
    uhlm_chat_template k = ct && ct->type == UHLM_GGUF_STRING
                               ? uhlm_chat_detect(ct->v.str.s, (size_t)ct->v.str.len)
                               : uhlm_chat_detect(NULL, 0);
    cJSON_AddStringToObject(o, "chat_template", k.name);
    cJSON_AddBoolToObject(o, "chat_template_supported", uhlm_chat_supported(k.kind));
    if (mi->arch[0]) cJSON_AddStringToObject(o, "architecture", mi->arch);
    if (mi->name[0]) cJSON_AddStringToObject(o, "name", mi->name);
    return 0;
}

/* What loading the model tells: its shapes (and, for llama2.c files, what GGUF keys say). */
static void info_model_json(cJSON *o, info_meta *mi, const uhlm_model *m) {
    const uhlm_config *p = uhlm_model_config(m);
    if (!mi->have_meta) {
        cJSON_AddStringToObject(o, "format", uhlm_format_name(uhlm_model_format(m)));
        cJSON_AddStringToObject(o, "architecture", "llama");
        cJSON_AddStringToObject(o, "chat_template", "none");
        cJSON_AddBoolToObject(o, "chat_template_supported", 0);
        count_llama2c(&mi->tt, m);
    }
    cJSON_AddNumberToObject(o, "n_layers", p->n_layers);
    cJSON_AddNumberToObject(o, "dim", p->dim);
    cJSON_AddNumberToObject(o, "hidden_dim", p->hidden_dim);
    cJSON_AddNumberToObject(o, "n_heads", p->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", p->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", p->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", p->vocab_size);
    cJSON_AddNumberToObject(o, "context_length", p->seq_len);
    cJSON_AddStringToObject(o, "rope_type", uhlm_rope_type_name(p->rope_type));
    cJSON_AddNumberToObject(o, "rope_freq_base", p->rope_theta);
    float fs = p->rope_freq_scale > 0 ? p->rope_freq_scale : 1.0f;
    cJSON_AddStringToObject(o, "rope_scaling", fs == 1.0f ? "none" : "linear");
    cJSON_AddNumberToObject(o, "rope_scaling_factor", 1.0 / fs);
    cJSON_AddNumberToObject(o, "norm_eps", p->norm_eps);
    cJSON_AddBoolToObject(o, "tied_output", p->shared_classifier);
    cJSON_AddStringToObject(o, "output_type", uhlm_type_name(m->w.output.type));
    int n_out;
    uhlm_model_output_tokens(m, &n_out);
    cJSON_AddNumberToObject(o, "output_tokens", n_out); /* < vocab_size: a draft vocabulary */
    cJSON_AddBoolToObject(o, "qkv_bias", p->n_layers > 0 && m->w.layers[0].bq != NULL);
    cJSON_AddNumberToObject(o, "weight_bytes_per_token", (double)uhlm_model_weight_bytes(m));
    if (uhlm_model_tokenizer(m)) {
        if (mi->bos < 0) mi->bos = uhlm_tokenizer_bos(uhlm_model_tokenizer(m));
        if (mi->eos < 0) mi->eos = uhlm_tokenizer_eos(uhlm_model_tokenizer(m));
    }
}

/* The vocabulary's kind: from the GGUF keys, or for a llama2.c file whether it loaded one. */
static const char *info_vocab_kind(const info_meta *mi, const uhlm_model *m) {
    return mi->have_meta ? vocab_kind(mi->tmodel[0] ? mi->tmodel : NULL)
                         : (m && uhlm_model_tokenizer(m) ? "SPM" : "none");
}

/* The tensor counts, the vocabulary and whether the model loads (lerr: why not). */
static void info_tail_json(cJSON *o, const info_meta *mi, const uhlm_model *m,
                           const uhlm_error *lerr) {
    const type_table *tt = &mi->tt;
    cJSON *types = cJSON_AddObjectToObject(o, "tensor_types");
    for (int i = 0; i < tt->n; i++) cJSON_AddNumberToObject(types, tt->t[i].name, tt->t[i].count);
    cJSON_AddNumberToObject(o, "n_tensors", (double)tt->n_tensors);
    cJSON_AddNumberToObject(o, "tensor_bytes", (double)tt->bytes);
    cJSON *voc = cJSON_AddObjectToObject(o, "vocabulary");
    cJSON_AddStringToObject(voc, "kind", info_vocab_kind(mi, m));
    if (mi->pre[0]) cJSON_AddStringToObject(voc, "pre", mi->pre);
    if (m && uhlm_model_tokenizer(m)) cJSON_AddNumberToObject(voc, "size", uhlm_tokenizer_vocab_size(uhlm_model_tokenizer(m)));
    if (mi->bos >= 0) cJSON_AddNumberToObject(voc, "bos", mi->bos);
    if (mi->eos >= 0) cJSON_AddNumberToObject(voc, "eos", mi->eos);
    cJSON_AddBoolToObject(o, "loadable", m != NULL);
    if (!m) cJSON_AddStringToObject(o, "error", lerr->msg);
}

static void info_print_shapes(const uhlm_model *m) {
    const uhlm_config *p = uhlm_model_config(m);
    float fs = p->rope_freq_scale > 0 ? p->rope_freq_scale : 1.0f;
    printf("layers:         %d\n", p->n_layers);
    printf("dim:            %d (FFN %d)\n", p->dim, p->hidden_dim);
    printf("heads:          %d (key/value heads %d, head dim %d)\n", p->n_heads,
           p->n_kv_heads, p->head_dim);
    printf("vocabulary:     %d tokens\n", p->vocab_size);
    printf("context:        %d\n", p->seq_len);
    printf("rope:           %s, base %g, scaling %s", uhlm_rope_type_name(p->rope_type),
           p->rope_theta, fs == 1.0f ? "none" : "linear");
    if (fs != 1.0f) printf(" x%g", 1.0 / fs);
    printf("\n");
    printf("norm eps:       %g\n", p->norm_eps);
    printf("output:         %s (%s)%s\n",
           p->shared_classifier ? "tied to token_embd" : "output.weight",
           uhlm_type_name(m->w.output.type),
           p->n_layers > 0 && m->w.layers[0].bq ? ", q/k/v biases" : "");
    int n_out;
    if (uhlm_model_output_tokens(m, &n_out))
        printf("draft vocab:    the classifier scores %d of %d tokens (uhlm.output_token_ids); "
               "the others have probability 0\n",
               n_out, p->vocab_size);
}

/* The plain-text report, read back from the JSON object o where it holds the value. */
static int info_print_text(const cJSON *o, const info_meta *mi, const uhlm_model *m,
                           const uhlm_error *lerr) {
    const cJSON *it;
    const type_table *tt = &mi->tt;
    const char *name = mi->name;
    printf("file:           %s (%.1f MiB)\n", mi->path, (double)mi->file_bytes / (1 << 20));
    it = cJSON_GetObjectItem(o, "format");
    if (it) printf("format:         %s", it->valuestring);
    if (mi->g)
        printf(" v%u, %llu keys", uhlm_gguf_version(mi->g), (unsigned long long)uhlm_gguf_n_kv(mi->g));
    if (it) printf("\n");
    it = cJSON_GetObjectItem(o, "architecture");
    if (it) printf("architecture:   %s%s%s%s\n", it->valuestring, name[0] ? " (" : "", name,
                   name[0] ? ")" : "");
    if (m) info_print_shapes(m);
    printf("tensors:        %llu, %.1f MiB:", (unsigned long long)tt->n_tensors,
           (double)tt->bytes / (1 << 20));
    for (int i = 0; i < tt->n; i++) printf(" %d %s%s", tt->t[i].count, tt->t[i].name, i + 1 < tt->n ? "," : "");
    printf("\n");
    printf("tokenizer:      %s", info_vocab_kind(mi, m));
    if (mi->pre[0]) printf(" (pre %s)", mi->pre);
    if (mi->bos >= 0) printf(", bos %d", mi->bos);
    if (mi->eos >= 0) printf(", eos %d", mi->eos);
    printf("\n");
    it = cJSON_GetObjectItem(o, "chat_template");
    if (it) {
        int sup = cJSON_IsTrue(cJSON_GetObjectItem(o, "chat_template_supported"));
        printf("chat template:  %s%s\n", it->valuestring,
               sup || !strcmp(it->valuestring, "none") ? "" : " (not supported by --chat)");
    }
    if (!m) printf("loadable:       no: %s\n", lerr->msg);
    fflush(stdout);
    return ferror(stdout) ? 1 : 0;
}

/* Describes the file at mi->path (tpath: its llama2.c tokenizer, or NULL). */
static int info_describe(info_meta *mi, const char *tpath, int json) {
    uhlm_error lerr = {{0}};
    uint32_t magic;
    if (info_probe(mi->path, &mi->file_bytes, &magic) != 0) return 1;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        fprintf(stderr, "uhlm info: out of memory\n");
        return 1;
    }
    cJSON_AddStringToObject(o, "file", mi->path);
    cJSON_AddNumberToObject(o, "file_bytes", (double)mi->file_bytes);
    if (magic == UHLM_GGUF_MAGIC && info_gguf(o, mi) != 0) {
        cJSON_Delete(o);
        return 1;
    }
    uhlm_model *m = uhlm_model_load(mi->path, tpath, &lerr);
    if (m) info_model_json(o, mi, m);
    info_tail_json(o, mi, m, &lerr);
    int rc = m ? 0 : 1;
    if (json) {
        if (cli_print_json("info", o) != 0) rc = 1;
        o = NULL;
    } else if (info_print_text(o, mi, m, &lerr) != 0) {
        rc = 1;
    }
    if (!m) fprintf(stderr, "uhlm info: %s\n", lerr.msg);
    cJSON_Delete(o);
    uhlm_model_free(m);
    return rc;
}

int cmd_info(int argc, char **argv) {
    const char *model_arg = UHLM_DEFAULT_LLM, *tok_arg = NULL;
    int json = 0;
    const cli_arg args[] = {
        CLI_ARG(CLI_MODEL, &model_arg),
        {.id = CLI_TOKENIZER, .dst = &tok_arg,
         .help = "llama2.c tokenizer.bin for llama2.c models (optional here)"},
        {.id = CLI_JSON, .dst = &json, .help = "print one JSON object instead"},
    };
    int prc = cli_parse(&info_cmd, args, sizeof args / sizeof args[0], argc, argv, NULL);
    if (prc != CLI_CONTINUE) return cli_exit_status(prc);
    info_meta *mi = calloc(1, sizeof *mi);
    if (!mi) {
        fprintf(stderr, "uhlm info: out of memory\n");
        return 1;
    }
    mi->bos = mi->eos = -1;
    char tpath[1024];
    cli_find_model_file(model_arg, mi->path, sizeof mi->path);
    if (tok_arg) cli_find_model_file(tok_arg, tpath, sizeof tpath);
    int rc = cli_check_default_model("info", NULL, model_arg, mi->path) != 0
                 ? 1
                 : info_describe(mi, tok_arg ? tpath : NULL, json);
    if (mi->g) uhlm_gguf_close(mi->g);
    free(mi);
    return rc;
}
