/* prompts.c: JSONL and JSON/Alpaca prompt sets (prompts.h). */
#include "uhlm/prompts.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void uhlm_prompts_free(uhlm_prompt_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free(s->items[i].id);
        free(s->items[i].text);
        free(s->items[i].reference);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

typedef struct {
    uhlm_prompt_set *s;
    int cap;
} builder;

static int add(builder *b, const char *id, const char *text, const char *reference,
               int instruction, const char *name, const char *where, uhlm_error *err) {
    if (!text[0]) return uhlm_set_error(err, "%s: %s: empty prompt", name, where);
    if (b->s->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 64;
        uhlm_prompt *ni = realloc(b->s->items, sizeof *ni * (size_t)nc);
        if (!ni) return uhlm_set_error(err, "%s: out of memory", name);
        b->s->items = ni;
        b->cap = nc;
    }
    uhlm_prompt *p = &b->s->items[b->s->n];
    p->id = dup_str(id);
    p->text = dup_str(text);
    p->reference = reference ? dup_str(reference) : NULL;
    p->instruction = instruction;
    if (!p->id || !p->text || (reference && !p->reference)) {
        free(p->id);
        free(p->text);
        free(p->reference);
        return uhlm_set_error(err, "%s: out of memory", name);
    }
    b->s->n++;
    return 0;
}

/* One object, either {"id","prompt"} or Alpaca. def_id names it when it has no id. */
static int add_object(builder *b, const cJSON *o, const char *def_id, const char *name,
                      const char *where, uhlm_error *err) {
    if (!cJSON_IsObject(o)) return uhlm_set_error(err, "%s: %s: not a JSON object", name, where);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    char idbuf[64];
    const char *ids = def_id;
    if (id && cJSON_IsString(id) && id->valuestring[0]) {
        ids = id->valuestring;
    } else if (id && cJSON_IsNumber(id)) {
        snprintf(idbuf, sizeof idbuf, "%.0f", id->valuedouble);
        ids = idbuf;
    } else if (id) {
        return uhlm_set_error(err, "%s: %s: \"id\" must be a non-empty string or a number", name,
                              where);
    }
    if (pr) {
        if (!cJSON_IsString(pr))
            return uhlm_set_error(err, "%s: %s: \"prompt\" must be a string", name, where);
        return add(b, ids, pr->valuestring, NULL, 0, name, where, err);
    }
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(o, "instruction");
    if (!ins)
        return uhlm_set_error(err, "%s: %s: no \"prompt\" field (nor an Alpaca \"instruction\")",
                              name, where);
    if (!cJSON_IsString(ins))
        return uhlm_set_error(err, "%s: %s: \"instruction\" must be a string", name, where);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (in && !cJSON_IsString(in) && !cJSON_IsNull(in))
        return uhlm_set_error(err, "%s: %s: \"input\" must be a string", name, where);
    const char *inp = in && cJSON_IsString(in) ? in->valuestring : "";
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "output");
    if (ref && !cJSON_IsString(ref) && !cJSON_IsNull(ref))
        return uhlm_set_error(err, "%s: %s: \"output\" must be a string", name, where);
    const char *refs = ref && cJSON_IsString(ref) ? ref->valuestring : NULL;
    size_t n1 = strlen(ins->valuestring), n2 = strlen(inp);
    char *text = malloc(n1 + n2 + 3);
    if (!text) return uhlm_set_error(err, "%s: out of memory", name);
    memcpy(text, ins->valuestring, n1);
    if (n2) {
        memcpy(text + n1, "\n\n", 2);
        memcpy(text + n1 + 2, inp, n2);
        text[n1 + 2 + n2] = '\0';
    } else {
        text[n1] = '\0';
    }
    int rc = add(b, ids, text, refs, 1, name, where, err);
    free(text);
    return rc;
}

static int parse_jsonl(builder *b, const char *buf, size_t len, const char *name,
                       uhlm_error *err) {
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && buf[end] != '\n') end++;
        line++;
        size_t a = pos, z = end;
        while (a < z && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
        while (z > a && (buf[z - 1] == ' ' || buf[z - 1] == '\t' || buf[z - 1] == '\r')) z--;
        pos = end + 1;
        if (a == z) continue;
        char where[64], def_id[32];
        snprintf(where, sizeof where, "line %d", line);
        snprintf(def_id, sizeof def_id, "line-%d", line);
        cJSON *o = cJSON_ParseWithLength(buf + a, z - a);
        if (!o) return uhlm_set_error(err, "%s: line %d: invalid JSON", name, line);
        int rc = add_object(b, o, def_id, name, where, err);
        cJSON_Delete(o);
        if (rc) return -1;
    }
    return 0;
}

static int parse_array(builder *b, const char *buf, size_t len, const char *name,
                       uhlm_error *err) {
    cJSON *arr = cJSON_ParseWithLength(buf, len);
    if (!arr || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return uhlm_set_error(err, "%s: invalid JSON (expected an array of prompt objects)", name);
    }
    int i = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char where[64], def_id[32];
        snprintf(where, sizeof where, "element %d", i);
        snprintf(def_id, sizeof def_id, "item-%d", i);
        if ((rc = add_object(b, it, def_id, name, where, err)) != 0) break;
        i++;
    }
    cJSON_Delete(arr);
    return rc;
}

static int cmp_id(const void *a, const void *b) {
    return strcmp((*(const uhlm_prompt *const *)a)->id, (*(const uhlm_prompt *const *)b)->id);
}

/* Sorting pointers keeps the check O(n log n): Alpaca-size sets have ~50k records. */
static int check_dups(const uhlm_prompt_set *s, const char *name, uhlm_error *err) {
    if (s->n < 2) return 0;
    const uhlm_prompt **v = malloc(sizeof *v * (size_t)s->n);
    if (!v) return uhlm_set_error(err, "%s: out of memory", name);
    for (int i = 0; i < s->n; i++) v[i] = &s->items[i];
    qsort(v, (size_t)s->n, sizeof *v, cmp_id);
    int rc = 0;
    for (int i = 1; i < s->n && !rc; i++)
        if (!strcmp(v[i - 1]->id, v[i]->id))
            rc = uhlm_set_error(err, "%s: duplicate id '%.100s' (ids must be unique)", name,
                                v[i]->id);
    free(v);
    return rc;
}

int uhlm_prompts_parse(const char *buf, size_t len, const char *name, uhlm_prompt_set *out,
                       uhlm_error *err) {
    out->items = NULL;
    out->n = 0;
    builder b = {out, 0};
    size_t i = 0;
    /* a UTF-8 byte-order mark is harmless; skip it with the blanks */
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF)
        i = 3;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    int rc;
    if (i == len)
        rc = uhlm_set_error(err, "%s: no prompts (empty file)", name);
    else if (buf[i] == '{')
        rc = parse_jsonl(&b, buf + i, len - i, name, err);
    else if (buf[i] == '[')
        rc = parse_array(&b, buf + i, len - i, name, err);
    else
        rc = uhlm_set_error(err,
                            "%s: not a prompt file (expected JSONL or a JSON array of objects "
                            "{\"id\",\"prompt\"} or Alpaca {\"instruction\",\"input\",\"output\"})",
                            name);
    if (rc == 0 && out->n == 0) rc = uhlm_set_error(err, "%s: no prompts", name);
    if (rc == 0) rc = check_dups(out, name, err);
    if (rc) uhlm_prompts_free(out);
    return rc;
}

int uhlm_prompts_load(const char *path, uhlm_prompt_set *out, uhlm_error *err) {
    out->items = NULL;
    out->n = 0;
    char *buf;
    size_t len;
    if (uhlm_read_file(path, "prompt", &buf, &len, err) != 0) return -1;
    int rc = uhlm_prompts_parse(buf, len, path, out, err);
    free(buf);
    return rc;
}

int uhlm_prompt_is_train(const char *id, double frac) {
    uint64_t h = uhlm_fnv1a(UHLM_FNV_INIT, id, strlen(id));
    return (double)(h % 10000) < frac * 10000.0;
}

int uhlm_prompts_split(const uhlm_prompt_set *in, double frac, int train, uhlm_prompt_set *out,
                       uhlm_error *err) {
    out->items = NULL;
    out->n = 0;
    builder b = {out, 0};
    for (int i = 0; i < in->n; i++) {
        if (uhlm_prompt_is_train(in->items[i].id, frac) != (train != 0)) continue;
        const uhlm_prompt *p = &in->items[i];
        if (add(&b, p->id, p->text, p->reference, p->instruction, "split", "copy", err) != 0) {
            uhlm_prompts_free(out);
            return -1;
        }
    }
    return 0;
}
