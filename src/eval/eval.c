/* eval.c: message logs and link re-accounting, embeddings, NLL, atomic files, progress
 * (eval.h). */
#include "uhlm/eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uhlm/tokenizer.h"

void uhlm_msglog_reset(uhlm_msglog *l, uint64_t open_bits) {
    l->n = 0;
    l->opened = 0;
    l->open_bits = open_bits;
}

void uhlm_msglog_free(uhlm_msglog *l) {
    free(l->msg);
    memset(l, 0, sizeof *l);
}

int uhlm_msglog_push(uhlm_msglog *l, int down, uint64_t bits) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        uint64_t *nm = realloc(l->msg, sizeof *nm * nc);
        if (!nm) return -1;
        l->msg = nm;
        l->cap = nc;
    }
    l->msg[l->n++] = bits << 1 | (down ? 1u : 0u);
    return 0;
}

int uhlm_msglog_event(uhlm_msglog *l, const uhlm_token_event *ev) {
    if (!ev->up_bits && !ev->down_bits) return 0;
    if (!l->opened) {
        l->opened = 1;
        if (uhlm_msglog_push(l, 0, l->open_bits)) return -1;
    }
    if (ev->up_bits && uhlm_msglog_push(l, 0, ev->up_bits)) return -1;
    if (ev->down_bits && uhlm_msglog_push(l, 1, ev->down_bits)) return -1;
    return 0;
}

void uhlm_msglog_replay(const uhlm_msglog *l, const uhlm_channel_params *p, uint64_t seed,
                        double *up_s, double *down_s) {
    /* a replay only computes times: it must never sleep, whatever the run's channel did */
    uhlm_channel_params q = *p;
    q.mode = UHLM_CHANNEL_ACCOUNTED;
    uhlm_channel ch;
    uhlm_channel_init(&ch, &q, seed);
    for (size_t i = 0; i < l->n; i++) {
        uint64_t bits = l->msg[i] >> 1;
        if (l->msg[i] & 1)
            uhlm_channel_send_down(&ch, bits);
        else
            uhlm_channel_send_up(&ch, bits);
    }
    *up_s = ch.up_s;
    *down_s = ch.down_s;
}

int uhlm_embed_tokens(uhlm_ctx *ctx, const int *tokens, int n, float *out, uhlm_error *err) {
    const uhlm_model *m = uhlm_ctx_model(ctx);
    int D = uhlm_model_config(m)->dim, cap = uhlm_ctx_n_ctx(ctx);
    if (n < 0) return uhlm_set_error(err, "embed: negative length");
    if (n > cap - 1) n = cap - 1; /* room for BOS */
    if (uhlm_seq_truncate(ctx, 0, 0, err) != 0) return -1;
    /* chunks bound the hidden-state buffer; the cache carries the context between them */
    enum { CHUNK = 64 };
    uhlm_batch_entry e[CHUNK];
    float *h = malloc(sizeof(float) * (size_t)D * CHUNK);
    double *acc = calloc((size_t)D, sizeof(double));
    if (!h || !acc) {
        free(h);
        free(acc);
        return uhlm_set_error(err, "embed: out of memory");
    }
    int total = n + 1, pooled = 0, rc = 0;
    for (int off = 0; off < total && rc == 0; off += CHUNK) {
        int k = total - off < CHUNK ? total - off : CHUNK;
        for (int i = 0; i < k; i++) {
            int p = off + i;
            e[i] = (uhlm_batch_entry){0, p, p == 0 ? uhlm_tokenizer_bos(uhlm_model_tokenizer(m)) : tokens[p - 1], 1};
        }
        if ((rc = uhlm_decode(ctx, e, k, NULL, h, err)) != 0) break;
        for (int i = 0; i < k; i++) {
            if (off + i == 0 && n > 0) continue; /* BOS is the same for every text */
            for (int j = 0; j < D; j++) acc[j] += h[(size_t)i * D + j];
            pooled++;
        }
    }
    if (rc == 0)
        for (int j = 0; j < D; j++) out[j] = (float)(acc[j] / pooled);
    free(h);
    free(acc);
    uhlm_error e2;
    uhlm_seq_truncate(ctx, 0, 0, &e2);
    return rc;
}

double uhlm_cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

int uhlm_sequence_nll(uhlm_ctx *ctx, const int *tokens, int n, int start, double *sum,
                      uhlm_error *err) {
    const uhlm_model *m = uhlm_ctx_model(ctx);
    int V = uhlm_model_config(m)->vocab_size;
    *sum = 0;
    if (start < 1 || start > n) return uhlm_set_error(err, "nll: start %d outside [1, %d]", start, n);
    if (n > uhlm_ctx_n_ctx(ctx))
        return uhlm_set_error(err, "nll: %d tokens, the context holds %d", n, uhlm_ctx_n_ctx(ctx));
    if (uhlm_seq_truncate(ctx, 0, 0, err) != 0) return -1;
    enum { CHUNK = 32 };
    uhlm_batch_entry e[CHUNK];
    float *lg = malloc(sizeof(float) * (size_t)V * CHUNK);
    if (!lg) return uhlm_set_error(err, "nll: out of memory");
    int rc = 0;
    /* entry p predicts token p+1; only entries start-1 .. n-2 need logits */
    for (int off = 0; off < n - 1 && rc == 0; off += CHUNK) {
        int k = n - 1 - off < CHUNK ? n - 1 - off : CHUNK;
        for (int i = 0; i < k; i++) {
            int p = off + i;
            e[i] = (uhlm_batch_entry){0, p, tokens[p], p >= start - 1};
        }
        if ((rc = uhlm_decode(ctx, e, k, lg, NULL, err)) != 0) break;
        int li = 0;
        for (int i = 0; i < k; i++) {
            int p = off + i;
            if (p < start - 1) continue;
            const float *z = lg + (size_t)li++ * V;
            float mx = z[0];
            for (int j = 1; j < V; j++)
                if (z[j] > mx) mx = z[j];
            double s = 0;
            for (int j = 0; j < V; j++) s += exp((double)z[j] - mx);
            *sum += log(s) + mx - z[tokens[p + 1]];
        }
    }
    free(lg);
    uhlm_error e2;
    uhlm_seq_truncate(ctx, 0, 0, &e2);
    return rc;
}

int uhlm_write_file_atomic(const char *path, const char *data, size_t len, uhlm_error *err) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return uhlm_set_error(err, "%s: out of memory", path);
    snprintf(tmp, pl + 16, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        uhlm_set_error(err, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int bad = len && fwrite(data, 1, len, f) != len;
    bad |= fflush(f) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        uhlm_set_error(err, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

void uhlm_progress_init(uhlm_progress *p, FILE *f, long total, const char *label) {
    memset(p, 0, sizeof *p);
    p->f = f;
    p->tty = f && isatty(fileno(f));
    p->total = total > 0 ? total : 1;
    p->t0 = p->last = uhlm_now();
    snprintf(p->label, sizeof p->label, "%s", label);
}

/* "mm:ss" left at the current rate, "done" at the end, "--:--" before the first step. */
static void progress_eta(const uhlm_progress *p, double el, double frac, char *eta, size_t n) {
    snprintf(eta, n, "--:--");
    if (p->done > 0 && frac < 1) {
        long s = (long)(el / frac - el + 0.5);
        snprintf(eta, n, "%02ld:%02ld", s / 60, s % 60);
    } else if (frac >= 1) {
        snprintf(eta, n, "done");
    }
}

static double progress_frac(const uhlm_progress *p) {
    double frac = (double)p->done / (double)p->total;
    return frac > 1 ? 1 : frac;
}

static void progress_draw(uhlm_progress *p) {
    double el = uhlm_now() - p->t0, frac = progress_frac(p);
    char eta[32];
    progress_eta(p, el, frac, eta, sizeof eta);
    enum { W = 30 };
    char bar[W + 1];
    int k = (int)(frac * W);
    for (int i = 0; i < W; i++) bar[i] = i < k ? '#' : '.';
    bar[W] = '\0';
    fprintf(p->f, "\r%s [%s] %3d%% %ld/%ld  %.0fs elapsed, ETA %s  ", p->label, bar,
            (int)(frac * 100), p->done, p->total, el, eta);
    fflush(p->f);
}

/* A log file or a pipe gets whole lines: a redrawn bar there is one endless line of
 * carriage returns. */
static void progress_line(uhlm_progress *p, double now, int last) {
    double el = now - p->t0, frac = progress_frac(p);
    char eta[32];
    /* the plan's count is an estimate that a run may finish short of */
    progress_eta(p, el, last ? 1.0 : frac, eta, sizeof eta);
    fprintf(p->f, "%s: %ld/%ld (%d%%), %.0f s elapsed, ETA %s\n", p->label, p->done, p->total,
            (int)(frac * 100), el, eta);
    fflush(p->f);
    p->last = now;
}

/* Lines in a log: one per tenth of the work, and one at least every PROGRESS_LINE_S seconds
 * between them, so a slow run still shows it is alive without flooding a fast one. */
#define PROGRESS_LINE_S 10.0

void uhlm_progress_step(uhlm_progress *p, long k) {
    long before = p->done;
    p->done += k;
    if (!p->f) return;
    double now = uhlm_now();
    if (!p->tty) {
        int tenth = (int)(10 * progress_frac(p)), was = (int)(10 * ((double)before / (double)p->total));
        if (p->done < p->total && (tenth > was || now - p->last >= PROGRESS_LINE_S))
            progress_line(p, now, 0);
        return;
    }
    /* a redraw per run would flood a slow terminal: 10 per second is enough */
    if (now - p->last < 0.1 && p->done < p->total) return;
    p->last = now;
    progress_draw(p);
}

void uhlm_progress_end(uhlm_progress *p) {
    if (!p->f) return;
    if (!p->tty) {
        progress_line(p, uhlm_now(), 1);
        return;
    }
    progress_draw(p);
    fputc('\n', p->f);
}
