/* channel.h: the accounted wireless link model (DESIGN §4).
 *
 * Each direction is a Shannon-rate link: R = W · log2(1 + SNR), SNR in linear units from the
 * configured dB. A message of b bits takes b / R seconds plus a fixed per-message latency.
 * With Rayleigh block fading, every message sees its own SNR drawn from an exponential
 * distribution whose mean is the configured SNR (the channel stays constant within a
 * message and is independent between messages). The draws come from the channel's own
 * sequential generator, seeded from the session seed (UHLM_STREAM_CHANNEL), so a run is
 * reproducible. Note that under Rayleigh fading the mean time per message is heavy-tailed
 * (E[1/log2(1+γ)] diverges logarithmically at γ -> 0): averages over short runs vary.
 *
 * Defaults (uhlm_channel_default_params): uplink W = 1 MHz, SNR = 10 dB; downlink the same
 * 1 MHz at the same SNR (the CLI's --snr/--bandwidth set both unless --down-* are given); no
 * per-message latency; no fading. At 10 dB, R = 1e6·log2(11) ≈ 3.46 Mbit/s.
 *
 * "Accounted" use: the device adds the returned link seconds to a virtual clock (the channel
 * keeps running totals) on top of measured compute time. "Shaped" use (mode
 * UHLM_CHANNEL_SHAPED): uhlm_channel_send_* also sleep for the returned time, so the sender's
 * wall clock pays the modelled link exactly as the accounted clock does, with the same
 * parameters and the same fading draws. The device sends the uplink before its request and
 * the downlink after the reply, so with a remote verifier the sleeps bracket the real
 * network round trip. Knows nothing of sockets. */
#ifndef UHLM_CHANNEL_H
#define UHLM_CHANNEL_H

#include "common.h"
#include "sampler.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_link {
    double bandwidth_hz; /* > 0 */
    double snr_db;       /* mean SNR under fading; finite */
    double latency_s;    /* fixed per message, >= 0 */
} uhlm_link;

typedef enum uhlm_fading { UHLM_FADING_NONE = 0, UHLM_FADING_RAYLEIGH = 1 } uhlm_fading;

typedef enum uhlm_channel_mode {
    UHLM_CHANNEL_ACCOUNTED = 0, /* link time only added to the virtual clock */
    UHLM_CHANNEL_SHAPED = 1     /* and also slept by the sender */
} uhlm_channel_mode;

typedef struct uhlm_channel_params {
    uhlm_link up, down;
    uhlm_fading fading;
    uhlm_channel_mode mode; /* default accounted */
} uhlm_channel_params;

#define UHLM_CHANNEL_DEFAULT_BANDWIDTH 1e6
#define UHLM_CHANNEL_DEFAULT_SNR_DB 10.0

UHLM_API uhlm_channel_params uhlm_channel_default_params(void);
UHLM_API int uhlm_channel_params_check(const uhlm_channel_params *p, uhlm_error *err);
UHLM_API int uhlm_fading_parse(const char *name, uhlm_fading *out); /* "none", "rayleigh" */
UHLM_API const char *uhlm_fading_name(uhlm_fading f);
UHLM_API int uhlm_channel_mode_parse(const char *name, uhlm_channel_mode *out); /* "accounted", "shaped" */
UHLM_API const char *uhlm_channel_mode_name(uhlm_channel_mode m);
/* Sleeps s seconds (s <= 0: returns at once), resuming after signals. */
UHLM_API void uhlm_sleep_s(double s);

UHLM_API double uhlm_db_to_linear(double db);
/* Shannon rate in bits/s for a bandwidth and a linear SNR. */
UHLM_API double uhlm_link_rate(double bandwidth_hz, double snr_linear);

/* One channel instance: parameters, the fading generator and the running totals. A plain
 * value with no pointers; one per session. */
typedef struct uhlm_channel {
    uhlm_channel_params p;
    uhlm_rng rng;
    double up_s, down_s;         /* link time so far */
    uint64_t up_bits, down_bits; /* bits sent so far */
    uint64_t up_msgs, down_msgs;
} uhlm_channel;

/* seed: the session seed (the CHANNEL stream is derived from it). */
UHLM_API void uhlm_channel_init(uhlm_channel *c, const uhlm_channel_params *p, uint64_t seed);
/* The linear SNR of the next message on link l (a fading draw, or the fixed value). */
UHLM_API double uhlm_channel_draw_snr(uhlm_channel *c, const uhlm_link *l);
/* Sends one message of `bits` bits; returns its link time in seconds and adds it (and the
 * bits) to the totals. A shaped channel sleeps that long before returning. */
UHLM_API double uhlm_channel_send_up(uhlm_channel *c, uint64_t bits);
UHLM_API double uhlm_channel_send_down(uhlm_channel *c, uint64_t bits);

#ifdef __cplusplus
}
#endif
#endif
