/* channel.c: Shannon-rate links with optional Rayleigh block fading (channel.h). */
#include "uhlm/channel.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "uhlm/verify.h"

uhlm_channel_params uhlm_channel_default_params(void) {
    uhlm_channel_params p;
    p.up = (uhlm_link){UHLM_CHANNEL_DEFAULT_BANDWIDTH, UHLM_CHANNEL_DEFAULT_SNR_DB, 0.0};
    p.down = p.up;
    p.fading = UHLM_FADING_NONE;
    p.mode = UHLM_CHANNEL_ACCOUNTED;
    return p;
}

static int check_link(const uhlm_link *l, const char *dir, uhlm_error *err) {
    if (!(l->bandwidth_hz > 0.0) || !isfinite(l->bandwidth_hz))
        return uhlm_set_error(err, "%s bandwidth must be a finite number > 0 Hz (got %g)", dir,
                              l->bandwidth_hz);
    if (!isfinite(l->snr_db) || l->snr_db < -200.0 || l->snr_db > 200.0)
        return uhlm_set_error(err, "%s SNR must be in [-200, 200] dB (got %g)", dir, l->snr_db);
    if (!(l->latency_s >= 0.0) || !isfinite(l->latency_s))
        return uhlm_set_error(err, "%s latency must be a finite number >= 0 s (got %g)", dir,
                              l->latency_s);
    return 0;
}

int uhlm_channel_params_check(const uhlm_channel_params *p, uhlm_error *err) {
    if (check_link(&p->up, "uplink", err) || check_link(&p->down, "downlink", err)) return -1;
    if (p->fading != UHLM_FADING_NONE && p->fading != UHLM_FADING_RAYLEIGH)
        return uhlm_set_error(err, "unknown fading model %d", (int)p->fading);
    if (p->mode != UHLM_CHANNEL_ACCOUNTED && p->mode != UHLM_CHANNEL_SHAPED)
        return uhlm_set_error(err, "unknown channel mode %d", (int)p->mode);
    return 0;
}

int uhlm_fading_parse(const char *name, uhlm_fading *out) {
    if (!strcmp(name, "none"))
        *out = UHLM_FADING_NONE;
    else if (!strcmp(name, "rayleigh"))
        *out = UHLM_FADING_RAYLEIGH;
    else
        return -1;
    return 0;
}

const char *uhlm_fading_name(uhlm_fading f) {
    return f == UHLM_FADING_RAYLEIGH ? "rayleigh" : f == UHLM_FADING_NONE ? "none" : "?";
}

int uhlm_channel_mode_parse(const char *name, uhlm_channel_mode *out) {
    if (!strcmp(name, "accounted"))
        *out = UHLM_CHANNEL_ACCOUNTED;
    else if (!strcmp(name, "shaped"))
        *out = UHLM_CHANNEL_SHAPED;
    else
        return -1;
    return 0;
}

const char *uhlm_channel_mode_name(uhlm_channel_mode m) {
    return m == UHLM_CHANNEL_SHAPED ? "shaped" : m == UHLM_CHANNEL_ACCOUNTED ? "accounted" : "?";
}

void uhlm_sleep_s(double s) {
    if (!(s > 0.0)) return;
    if (s > 1e9) s = 1e9; /* keeps tv_sec in range; a link this slow is a configuration error */
    struct timespec ts, rem;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
    while (nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
}

double uhlm_db_to_linear(double db) { return pow(10.0, db / 10.0); }

double uhlm_link_rate(double bandwidth_hz, double snr_linear) {
    return bandwidth_hz * log2(1.0 + snr_linear);
}

void uhlm_channel_init(uhlm_channel *c, const uhlm_channel_params *p, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->p = *p;
    uhlm_rng_seed(&c->rng, uhlm_hybrid_stream_seed(seed, UHLM_STREAM_CHANNEL));
}

double uhlm_channel_draw_snr(uhlm_channel *c, const uhlm_link *l) {
    double mean = uhlm_db_to_linear(l->snr_db);
    if (c->p.fading != UHLM_FADING_RAYLEIGH) return mean;
    /* |h|^2 ~ Exp(1) under Rayleigh fading. v is uniform on the open (0, 1), so the SNR is
     * finite and never exactly 0 (which would make the message take forever). */
    double v = ((double)(uhlm_rng_u64(&c->rng) >> 11) + 0.5) * 0x1.0p-53;
    return -mean * log(v);
}

/* Seconds one message of `bits` takes over link l: latency plus airtime at a drawn SNR. */
static double link_delay(uhlm_channel *c, const uhlm_link *l, uint64_t bits) {
    double t = l->latency_s;
    if (bits > 0) {
        double snr = uhlm_channel_draw_snr(c, l);
        t += (double)bits / uhlm_link_rate(l->bandwidth_hz, snr);
    }
    return t;
}

double uhlm_channel_send_up(uhlm_channel *c, uint64_t bits) {
    double t = link_delay(c, &c->p.up, bits);
    if (c->p.mode == UHLM_CHANNEL_SHAPED) uhlm_sleep_s(t);
    c->up_s += t;
    c->up_bits += bits;
    c->up_msgs++;
    return t;
}

double uhlm_channel_send_down(uhlm_channel *c, uint64_t bits) {
    double t = link_delay(c, &c->p.down, bits);
    if (c->p.mode == UHLM_CHANNEL_SHAPED) uhlm_sleep_s(t);
    c->down_s += t;
    c->down_bits += bits;
    c->down_msgs++;
    return t;
}
