/* test_hybrid_channel.c: Shannon rates at known SNRs, per-message latency, separate
 * downlink, Rayleigh fading statistics and reproducibility, parameter checks. */
#include "check.h"
#include "uhlm/channel.h"

static int near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

static void test_rates(void) {
    CHECK(near(uhlm_db_to_linear(10.0), 10.0, 1e-12));
    CHECK(near(uhlm_db_to_linear(-10.0), 0.1, 1e-12));
    CHECK(near(uhlm_link_rate(1e6, 1.0), 1e6, 1e-12));                      /* 0 dB: 1 bit/s/Hz */
    CHECK(near(uhlm_link_rate(1e6, 10.0), 3459431.618637297, 1e-9));        /* 10 dB */
    CHECK(near(uhlm_link_rate(1e6, 1000.0), 9967226.258835993, 1e-9));      /* 30 dB */
    CHECK(near(uhlm_link_rate(2e6, 0.1), 2e6 * 0.13750352374993502, 1e-9)); /* -10 dB */

    uhlm_channel_params p = uhlm_channel_default_params();
    CHECK(p.up.bandwidth_hz == 1e6 && p.up.snr_db == 10.0 && p.up.latency_s == 0.0);
    CHECK(p.down.bandwidth_hz == 1e6 && p.down.snr_db == 10.0 && p.fading == UHLM_FADING_NONE);
    p.up.snr_db = 0.0;
    p.up.latency_s = 0.005;
    p.down = (uhlm_link){2e6, 30.0, 0.001};
    uhlm_channel c;
    uhlm_channel_init(&c, &p, 1);
    CHECK(near(uhlm_channel_send_up(&c, 1000000), 1.005, 1e-12));
    CHECK(near(uhlm_channel_send_up(&c, 0), 0.005, 1e-12)); /* latency only */
    CHECK(near(uhlm_channel_send_down(&c, 10), 0.001 + 10.0 / (2e6 * log2(1001.0)), 1e-12));
    CHECK(c.up_bits == 1000000 && c.down_bits == 10 && c.up_msgs == 2 && c.down_msgs == 1);
    CHECK(near(c.up_s, 1.010, 1e-12));
    /* the paper's 128 kB f32 payload at V = 32000, 1 MHz, 10 dB: about 0.296 s */
    uhlm_channel_params d = uhlm_channel_default_params();
    uhlm_channel_init(&c, &d, 1);
    CHECK(near(uhlm_channel_send_up(&c, 1024000), 1024000 / 3459431.618637297, 1e-9));
}

static void test_fading(void) {
    uhlm_channel_params p = uhlm_channel_default_params();
    p.fading = UHLM_FADING_RAYLEIGH;
    p.up.snr_db = 10.0;
    uhlm_channel a, b;
    uhlm_channel_init(&a, &p, 77);
    uhlm_channel_init(&b, &p, 77);
    enum { N = 200000 };
    double s = 0, below_median = 0, minv = 1e300;
    int same = 1;
    for (int i = 0; i < N; i++) {
        double g = uhlm_channel_draw_snr(&a, &p.up);
        same &= g == uhlm_channel_draw_snr(&b, &p.up);
        s += g;
        below_median += g < 10.0 * log(2.0);
        minv = g < minv ? g : minv;
    }
    /* Exp(mean 10): the mean's standard error is 10/sqrt(N) */
    printf("rayleigh: mean SNR %.4f (want 10, se %.4f), share below the median %.4f\n", s / N,
           10.0 / sqrt(N), below_median / N);
    CHECK(same);
    CHECK(fabs(s / N - 10.0) < 5 * 10.0 / sqrt(N));
    CHECK(fabs(below_median / N - 0.5) < 5 * sqrt(0.25 / N));
    CHECK(minv > 0.0);
    uhlm_channel_init(&b, &p, 78);
    CHECK(uhlm_channel_draw_snr(&b, &p.up) != uhlm_channel_draw_snr(&a, &p.up));
    /* faded link time is finite and on average above the unfaded one (Jensen) */
    uhlm_channel_init(&a, &p, 5);
    double tf = 0;
    for (int i = 0; i < 10000; i++) tf += uhlm_channel_send_up(&a, 16384);
    CHECK(isfinite(tf) && tf / 10000 > 16384 / uhlm_link_rate(1e6, 10.0));
    /* no fading: the configured SNR every time */
    p.fading = UHLM_FADING_NONE;
    uhlm_channel_init(&a, &p, 5);
    CHECK(uhlm_channel_draw_snr(&a, &p.up) == 10.0);
}

static void test_params(void) {
    uhlm_error err;
    uhlm_channel_params p = uhlm_channel_default_params();
    CHECK(uhlm_channel_params_check(&p, &err) == 0);
    p.up.bandwidth_hz = 0.0;
    CHECK(uhlm_channel_params_check(&p, &err) != 0 && strstr(err.msg, "uplink"));
    p = uhlm_channel_default_params();
    p.down.latency_s = -1.0;
    CHECK(uhlm_channel_params_check(&p, &err) != 0 && strstr(err.msg, "downlink"));
    p = uhlm_channel_default_params();
    p.up.snr_db = NAN;
    CHECK(uhlm_channel_params_check(&p, &err) != 0);
    uhlm_fading f;
    CHECK(uhlm_fading_parse("rayleigh", &f) == 0 && f == UHLM_FADING_RAYLEIGH);
    CHECK(uhlm_fading_parse("none", &f) == 0 && f == UHLM_FADING_NONE);
    CHECK(uhlm_fading_parse("rician", &f) != 0);
}

int main(void) {
    test_rates();
    test_fading();
    test_params();
    return check_report();
}
