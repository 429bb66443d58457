/* cli_report.c: a device run's report as JSON (the library hands out values; cJSON stays in
 * the CLI). */
#include "cli/cli_report.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#include "uhlm/channel.h"
#include "uhlm/payload.h"
#include "uhlm/policy.h"
#include "uhlm/uncertainty.h"

static double ratio(double a, double b) { return b > 0.0 ? a / b : 0.0; }

cJSON *cli_device_report_json(const uhlm_device_report *r) {
    const uhlm_device_stats *s = &r->stats;
    const uhlm_device_params *p = &r->params;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char buf[64];
    cJSON_AddStringToObject(o, "mode", uhlm_mode_name(p->policy.mode));
    cJSON_AddStringToObject(o, "slm", r->slm);
    cJSON_AddStringToObject(o, "llm", r->llm);
    uhlm_payload_format(&p->payload, buf, sizeof buf);
    cJSON_AddStringToObject(o, "payload", buf);
    cJSON_AddNumberToObject(o, "payload_bits", (double)uhlm_payload_bits(&p->payload, r->n_vocab));
    cJSON_AddNumberToObject(o, "vocab_size", r->n_vocab);
    cJSON_AddNumberToObject(o, "u_th", p->policy.u_th);
    cJSON_AddNumberToObject(o, "skip_prob", p->policy.skip_prob);
    cJSON_AddStringToObject(o, "uncertainty", uhlm_unc_method_name(p->unc.method));
    cJSON_AddNumberToObject(o, "samples", p->unc.samples);
    cJSON_AddNumberToObject(o, "theta_max", p->unc.theta_max);
    cJSON_AddNumberToObject(o, "temperature", p->sampling.temp);
    cJSON_AddNumberToObject(o, "top_k", p->sampling.top_k);
    cJSON_AddNumberToObject(o, "top_p", p->sampling.top_p);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", buf); /* a string: doubles lose 64-bit seeds */
    cJSON *ch = cJSON_AddObjectToObject(o, "channel");
    if (ch) {
        cJSON_AddNumberToObject(ch, "up_bandwidth_hz", p->channel.up.bandwidth_hz);
        cJSON_AddNumberToObject(ch, "up_snr_db", p->channel.up.snr_db);
        cJSON_AddNumberToObject(ch, "up_latency_s", p->channel.up.latency_s);
        cJSON_AddNumberToObject(ch, "down_bandwidth_hz", p->channel.down.bandwidth_hz);
        cJSON_AddNumberToObject(ch, "down_snr_db", p->channel.down.snr_db);
        cJSON_AddNumberToObject(ch, "down_latency_s", p->channel.down.latency_s);
        cJSON_AddStringToObject(ch, "fading", uhlm_fading_name(p->channel.fading));
        cJSON_AddStringToObject(ch, "mode", uhlm_channel_mode_name(p->channel.mode));
    }
    cJSON_AddNumberToObject(o, "prompt_tokens", s->prompt_tokens);
    cJSON_AddNumberToObject(o, "generated_tokens", s->generated);
    cJSON_AddNumberToObject(o, "transmitted_tokens", s->transmitted);
    cJSON_AddNumberToObject(o, "skipped_tokens", s->skipped);
    cJSON_AddNumberToObject(o, "tr", uhlm_stats_tr(s));
    cJSON_AddNumberToObject(o, "accepted", s->accepted);
    cJSON_AddNumberToObject(o, "rejected", s->rejected);
    cJSON_AddNumberToObject(o, "rejection_rate", uhlm_stats_rejection_rate(s));
    cJSON_AddNumberToObject(o, "accepted_outright", s->accepted_outright);
    cJSON_AddNumberToObject(o, "unverified_tokens", s->unverified);
    cJSON_AddNumberToObject(o, "catchup_tokens", s->catchup_tokens);
    cJSON_AddNumberToObject(o, "llm_forward_calls", s->llm_forward_calls);
    cJSON_AddNumberToObject(o, "llm_batch_tokens", s->llm_batch_tokens);
    cJSON_AddNumberToObject(o, "uplink_bits", (double)s->uplink_bits);
    cJSON_AddNumberToObject(o, "uplink_bytes", (double)((s->uplink_bits + 7) / 8));
    cJSON_AddNumberToObject(o, "downlink_bits", (double)s->downlink_bits);
    cJSON_AddNumberToObject(o, "uplink_messages", (double)s->uplink_msgs);
    cJSON_AddNumberToObject(o, "downlink_messages", (double)s->downlink_msgs);
    cJSON_AddNumberToObject(o, "slm_seconds", s->slm_s);
    cJSON_AddNumberToObject(o, "uncertainty_seconds", s->unc_s);
    cJSON_AddNumberToObject(o, "llm_seconds", s->llm_s);
    cJSON_AddNumberToObject(o, "uplink_seconds", s->up_s);
    cJSON_AddNumberToObject(o, "downlink_seconds", s->down_s);
    cJSON_AddNumberToObject(o, "link_seconds", s->up_s + s->down_s);
    cJSON_AddNumberToObject(o, "compute_seconds", uhlm_stats_compute_s(s));
    cJSON_AddNumberToObject(o, "accounted_seconds", uhlm_stats_accounted_s(s));
    cJSON_AddNumberToObject(o, "verify_wall_seconds", s->verify_wall_s);
    cJSON_AddNumberToObject(o, "wall_seconds", s->wall_s);
    cJSON_AddNumberToObject(o, "throughput_accounted",
                            ratio(s->generated, uhlm_stats_accounted_s(s)));
    cJSON_AddNumberToObject(o, "throughput_compute", ratio(s->generated, uhlm_stats_compute_s(s)));
    cJSON_AddNumberToObject(o, "throughput_wall", ratio(s->generated, s->wall_s));
    if (s->n_u)
        cJSON_AddNumberToObject(o, "mean_u", s->sum_u / s->n_u);
    else
        cJSON_AddNullToObject(o, "mean_u");
    if (s->transmitted && p->policy.mode != UHLM_MODE_LLM)
        cJSON_AddNumberToObject(o, "mean_beta", s->sum_beta / s->transmitted);
    else
        cJSON_AddNullToObject(o, "mean_beta");
    if (r->has_shadow) {
        cJSON *sh = cJSON_AddObjectToObject(o, "shadow");
        if (sh) {
            cJSON_AddNumberToObject(sh, "evaluated", s->shadow_evaluated);
            cJSON_AddNumberToObject(sh, "true_skips", s->shadow_true_skips);
            cJSON_AddNumberToObject(sh, "tsr", uhlm_stats_tsr(s));
            cJSON_AddNumberToObject(sh, "would_reject_rate",
                                    ratio(s->shadow_beta_sum, s->shadow_evaluated));
        }
    }
    cJSON_AddStringToObject(o, "stop", s->stop ? s->stop : "running");
    return o;
}

