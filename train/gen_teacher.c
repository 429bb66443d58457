/* gen_teacher: self-generated chat data with the teacher's distributions, for drafter training.
 *
 * For each sample i the LLM (any GGUF that uhlm loads) is given only its chat template's user
 * prefix ("<|im_start|>user\n" for ChatML) and writes an instruction at temperature 1 until
 * its end-of-turn token; the tool then closes the turn, opens the assistant turn and lets the
 * model answer, again at temperature 1. No outside text is involved, so the evaluation set
 * (Alpaca) cannot leak into training.
 *
 * Every position's logits come from uhlm_decode on the real file (the engine the drafter will
 * be verified against), and are stored as the top-K logits plus the log-sum-exp over the whole
 * vocabulary, so the trainer knows the exact teacher probability of each of the K tokens and
 * the mass of the rest. Sample i draws from its own stream seeded by (seed, i) and sequences
 * do not interact inside a batch, so each sample (tagged with its index; the file lists them in
 * the order they finish) depends only on the arguments, not on -S or -t.
 *
 * Output (little-endian), after a header "UHLMTCH1", int32 K:
 *   per sample: int32 index, int32 T, int32 prompt_end (first assistant-content position),
 *   int32 tokens[T], then for positions 0..T-2: int32 ids[K], float logits[K], float lse.
 * Position t's record is the teacher's distribution of token t+1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uhlm/model.h"
#include "uhlm/sampler.h"
#include "uhlm/tokenizer.h"

#define MAX_PREFIX 16

typedef struct slot {
    int active;
    int index;      /* sample index, -1 when idle */
    int phase;      /* 0: writing the instruction, 1: writing the answer */
    int prompt_end; /* position where the answer starts */
    int n;          /* tokens so far */
    int *tok;       /* n_ctx */
    int32_t *ids;   /* (n_ctx) x K */
    float *lg;      /* (n_ctx) x K */
    float *lse;     /* n_ctx */
    uhlm_rng rng;
} slot;

typedef struct opts {
    const char *model, *out;
    int n_samples, first, topk, max_prompt, max_answer, n_seq, threads;
    uint64_t seed;
    float temp;
} opts;

static void usage(void) {
    fprintf(stderr,
            "usage: gen_teacher -m MODEL -o OUT.bin -n SAMPLES [--first I] [--seed S] [-k K]\n"
            "                   [--max-prompt N] [--max-answer N] [-S SEQS] [-t THREADS] [--temp T]\n");
}

static int parse_int(const char *s, const char *name, int lo, int hi, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || x < lo || x > hi) {
        fprintf(stderr, "gen_teacher: %s must be an integer in [%d, %d], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *v = (int)x;
    return 0;
}

/* Top-K of logits[0..n) by value (ties: lower id first), and the log-sum-exp of all n. */
static void topk_lse(const float *logits, int n, int k, int32_t *ids, float *vals, float *lse) {
    int m = 0;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (v > mx) mx = v;
        if (m < k || v > vals[m - 1]) {
            int j = m < k ? m++ : k - 1;
            while (j > 0 && vals[j - 1] < v) {
                vals[j] = vals[j - 1];
                ids[j] = ids[j - 1];
                j--;
            }
            vals[j] = v;
            ids[j] = i;
        }
    }
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)logits[i] - mx);
    *lse = (float)(mx + log(s));
}

static int write_sample(FILE *f, const slot *s, int k) {
    int32_t hdr[3] = {s->index, s->n, s->prompt_end};
    int ok = fwrite(hdr, sizeof hdr, 1, f) == 1 &&
             fwrite(s->tok, sizeof(int), (size_t)s->n, f) == (size_t)s->n;
    for (int t = 0; ok && t + 1 < s->n; t++)
        ok = fwrite(s->ids + (size_t)t * k, sizeof(int32_t), (size_t)k, f) == (size_t)k &&
             fwrite(s->lg + (size_t)t * k, sizeof(float), (size_t)k, f) == (size_t)k &&
             fwrite(&s->lse[t], sizeof(float), 1, f) == 1;
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    opts o = {NULL, NULL, 0, 0, 32, 64, 256, 8, 1, 1234, 1.0f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "-m")) o.model = v;
        else if (!strcmp(a, "-o")) o.out = v;
        else if (!strcmp(a, "-n")) rc = parse_int(v, "-n", 1, 10000000, &o.n_samples);
        else if (!strcmp(a, "--first")) rc = parse_int(v, "--first", 0, 100000000, &o.first);
        else if (!strcmp(a, "-k")) rc = parse_int(v, "-k", 1, 1024, &o.topk);
        else if (!strcmp(a, "--max-prompt")) rc = parse_int(v, "--max-prompt", 1, 4096, &o.max_prompt);
        else if (!strcmp(a, "--max-answer")) rc = parse_int(v, "--max-answer", 1, 4096, &o.max_answer);
        else if (!strcmp(a, "-S")) rc = parse_int(v, "-S", 1, 256, &o.n_seq);
        else if (!strcmp(a, "-t")) rc = parse_int(v, "-t", 1, 256, &o.threads);
        else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(v, &end, 10);
            if (*v == 0 || *end != 0) rc = -1, fprintf(stderr, "gen_teacher: bad --seed '%s'\n", v);
        } else if (!strcmp(a, "--temp")) {
            char *end;
            o.temp = strtof(v, &end);
            if (*v == 0 || *end != 0 || !(o.temp > 0) || o.temp > 10)
                rc = -1, fprintf(stderr, "gen_teacher: --temp must be in (0, 10], got '%s'\n", v);
        } else {
            usage();
            return 2;
        }
        if (rc) return 2;
        i++;
    }
    if (!o.model || !o.out || o.n_samples <= 0) {
        usage();
        return 2;
    }
    uhlm_error err = {{0}};
    uhlm_model *m = uhlm_model_load(o.model, NULL, &err);
    if (!m) {
        fprintf(stderr, "gen_teacher: %s\n", err.msg);
        return 1;
    }
    const uhlm_tokenizer *tk = uhlm_model_tokenizer(m);
    const int V = uhlm_model_config(m)->vocab_size, K = o.topk < V ? o.topk : V;
    /* ChatML pieces, tokenized with special tokens parsed */
    static const char *user_pre = "<|im_start|>user\n", *asst_pre = "<|im_end|>\n<|im_start|>assistant\n";
    int upre[MAX_PREFIX], apre[MAX_PREFIX];
    int nu = uhlm_tokenize_special(tk, user_pre, strlen(user_pre), uhlm_tokenizer_add_bos(tk), 0, 1,
                                   upre, MAX_PREFIX, &err);
    int na = uhlm_tokenize_special(tk, asst_pre, strlen(asst_pre), 0, 0, 1, apre, MAX_PREFIX, &err);
    int im_end = uhlm_tokenizer_find(tk, "<|im_end|>", 10);
    if (nu <= 0 || na <= 1 || nu > MAX_PREFIX || na > MAX_PREFIX || im_end < 0 || apre[0] != im_end) {
        fprintf(stderr, "gen_teacher: %s has no ChatML vocabulary (<|im_start|>, <|im_end|>)%s%s\n",
                o.model, err.msg[0] ? ": " : "", err.msg);
        uhlm_model_free(m);
        return 1;
    }
    const int n_ctx = nu + o.max_prompt + na + o.max_answer + 1;
    uhlm_ctx_params cp = uhlm_ctx_default_params();
    cp.n_seq = o.n_seq;
    cp.n_ctx = n_ctx;
    cp.n_threads = o.threads;
    uhlm_ctx *c = uhlm_ctx_new(m, &cp, &err);
    FILE *f = c ? fopen(o.out, "wb") : NULL;
    slot *sl = calloc((size_t)o.n_seq, sizeof *sl);
    const size_t cap = (size_t)o.n_seq * MAX_PREFIX; /* pending entries per step, at most */
    float *logits = malloc(sizeof(float) * (size_t)V * cap);
    float *probs = malloc(sizeof(float) * (size_t)V);
    uhlm_batch_entry *be = malloc(sizeof *be * cap);
    int rc = 1;
    if (!c) {
        fprintf(stderr, "gen_teacher: %s\n", err.msg);
        goto done;
    }
    if (!f) {
        fprintf(stderr, "gen_teacher: cannot write %s\n", o.out);
        goto done;
    }
    if (!sl || !logits || !probs || !be) goto oom;
    for (int s = 0; s < o.n_seq; s++) {
        sl[s].tok = malloc(sizeof(int) * (size_t)n_ctx);
        sl[s].ids = malloc(sizeof(int32_t) * (size_t)n_ctx * (size_t)K);
        sl[s].lg = malloc(sizeof(float) * (size_t)n_ctx * (size_t)K);
        sl[s].lse = malloc(sizeof(float) * (size_t)n_ctx);
        if (!sl[s].tok || !sl[s].ids || !sl[s].lg || !sl[s].lse) goto oom;
        sl[s].index = -1;
    }
    int32_t fh[1] = {K};
    if (fwrite("UHLMTCH1", 8, 1, f) != 1 || fwrite(fh, sizeof fh, 1, f) != 1) goto werr;
    const uhlm_sampling samp = {o.temp, 0, 1.0f};
    int next = o.first, end = o.first + o.n_samples, done_n = 0;
    long long n_tok = 0;
    double t0 = uhlm_now(), last = t0;
    for (;;) {
        /* fill idle slots */
        for (int s = 0; s < o.n_seq; s++) {
            slot *q = &sl[s];
            if (q->active || next >= end) continue;
            if (uhlm_seq_truncate(c, s, 0, &err) != 0) goto derr;
            q->active = 1;
            q->index = next++;
            q->phase = 0;
            q->prompt_end = 0;
            q->n = 0;
            uhlm_rng_seed(&q->rng, o.seed * 0x9E3779B97F4A7C15ull + (uint64_t)q->index);
            memcpy(q->tok, upre, sizeof(int) * (size_t)nu);
            q->n = nu;
        }
        /* one batch: every active slot feeds the tokens it has not yet decoded (a template
         * prefix, or the one token it just drew), each with its logits */
        int nb = 0;
        for (int s = 0; s < o.n_seq; s++)
            for (int p = uhlm_seq_len(c, s); sl[s].active && p < sl[s].n; p++)
                be[nb++] = (uhlm_batch_entry){s, p, sl[s].tok[p], 1};
        if (nb == 0) break;
        if (uhlm_decode(c, be, nb, logits, NULL, &err) != 0) goto derr;
        for (int r = 0; r < nb; r++) {
            slot *q = &sl[be[r].seq];
            int p = be[r].pos;
            topk_lse(logits + (size_t)r * V, V, K, q->ids + (size_t)p * K, q->lg + (size_t)p * K,
                     &q->lse[p]);
        }
        for (int r = 0; r < nb; r++) {
            /* sample from the last row of each slot */
            if (r + 1 < nb && be[r + 1].seq == be[r].seq) continue;
            slot *q = &sl[be[r].seq];
            const float *lrow = logits + (size_t)r * V;
            /* the model's next token */
            if (uhlm_sampling_probs(&samp, lrow, V, probs) < 0) goto oom;
            int tkn = uhlm_sample(probs, V, &q->rng);
            int eog = uhlm_tokenizer_is_eog(tk, tkn);
            if (q->phase == 0) {
                int len = q->n - nu;
                if (tkn == im_end || len + 1 >= o.max_prompt || eog) {
                    /* close the user turn (with the model's own <|im_end|> when it wrote one:
                     * it is apre[0]) and open the assistant turn */
                    if (!(tkn == im_end) && len + 1 >= o.max_prompt && !eog) q->tok[q->n++] = tkn;
                    memcpy(q->tok + q->n, apre, sizeof(int) * (size_t)na);
                    q->n += na;
                    q->prompt_end = q->n;
                    q->phase = 1;
                } else {
                    q->tok[q->n++] = tkn;
                }
            } else {
                q->tok[q->n++] = tkn;
                if (eog || q->n - q->prompt_end >= o.max_answer) {
                    /* the final token's own distribution is not needed: decode stops here */
                    if (write_sample(f, q, K) != 0) goto werr;
                    n_tok += q->n;
                    done_n++;
                    q->active = 0;
                }
            }
        }
        double now = uhlm_now();
        if (now - last > 30 || done_n == o.n_samples) {
            /* the ETA at the rate of finished samples: "--:--" until the first one */
            char eta[32] = "--:--";
            if (done_n == o.n_samples) {
                snprintf(eta, sizeof eta, "done");
            } else if (done_n > 0) {
                long s = (long)((now - t0) * (o.n_samples - done_n) / done_n + 0.5);
                snprintf(eta, sizeof eta, "%02ld:%02ld", s / 60, s % 60);
            }
            fprintf(stderr, "gen_teacher: %d/%d samples, %lld tokens, %.0f s elapsed, ETA %s, %.1f tok/s\n",
                    done_n, o.n_samples, n_tok, now - t0, eta, n_tok / (now - t0 + 1e-9));
            last = now;
        }
        if (done_n == o.n_samples) break;
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto werr;
    }
    f = NULL;
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "gen_teacher: out of memory\n");
    goto done;
derr:
    fprintf(stderr, "gen_teacher: decode: %s\n", err.msg);
    goto done;
werr:
    fprintf(stderr, "gen_teacher: write error on %s\n", o.out);
done:
    if (f) fclose(f);
    if (sl)
        for (int s = 0; s < o.n_seq; s++) free(sl[s].tok), free(sl[s].ids), free(sl[s].lg), free(sl[s].lse);
    free(sl);
    free(logits);
    free(probs);
    free(be);
    uhlm_ctx_free(c);
    uhlm_model_free(m);
    return rc;
}
