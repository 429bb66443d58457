/* fuzz_calib.c: libFuzzer target for the calibration reader (uhlm/calib.h): the --risk
 * parser and uhlm_calib_load_threshold on a calib.json.
 *
 * Input: byte 0 picks the risk (averse, prone, budget, budget:R with R from byte 1, or the
 * text of the input up to its first newline), the rest is the file. A threshold that loads
 * must be a finite number; for budget:R it must not decrease as R grows (the curve is
 * monotone), checked at R and R + 0.1.
 * fuzz-max-len: 8192
 *
 * Built with -DUHLM_FUZZ_SEEDGEN, it writes seeds: calib.json files as `uhlm calibrate`
 * writes them (thresholds and a budget curve), and malformed neighbours. */
#include <math.h>

#include "fuzz_common.h"
#include "uhlm/calib.h"

#ifndef UHLM_FUZZ_SEEDGEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    char risk[64];
    double R = data[1] / 255.0;
    uhlm_error err;
    switch (data[0] % 5) {
    case 0: snprintf(risk, sizeof risk, "averse"); break;
    case 1: snprintf(risk, sizeof risk, "prone"); break;
    case 2: snprintf(risk, sizeof risk, "budget"); break;
    case 3: snprintf(risk, sizeof risk, "budget:%.6f", R); break;
    default: {
        size_t n = 0;
        while (n < size - 2 && n < sizeof risk - 1 && data[2 + n] != '\n') n++;
        memcpy(risk, data + 2, n);
        risk[n] = '\0';
        uhlm_risk_kind kind;
        double r;
        if (uhlm_calib_risk_parse(risk, &kind, &r, &err) == 0)
            fuzz_require(kind != UHLM_RISK_BUDGET || isnan(r) || (r >= 0.0 && r <= 1.0),
                         "a budget outside [0, 1] parsed");
        return 0;
    }
    }
    const char *path = fuzz_as_file(data + 2, size - 2);
    double u = NAN;
    if (uhlm_calib_load_threshold(path, risk, &u, &err) != 0) {
        fuzz_require(strstr(err.msg, path) != NULL || strstr(err.msg, "risk") != NULL,
                     "error message without the path");
        return 0;
    }
    fuzz_require(isfinite(u), "a non-finite threshold loaded");
    if (data[0] % 5 == 3 && R <= 0.9) {
        char r2[64];
        snprintf(r2, sizeof r2, "budget:%.6f", R + 0.1);
        double u2 = NAN;
        fuzz_require(uhlm_calib_load_threshold(path, r2, &u2, &err) == 0 && u2 >= u,
                     "budget threshold decreases with the budget");
    }
    return 0;
}

#else /* UHLM_FUZZ_SEEDGEN */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static const char *files[] = {
        "{\"thresholds\": {\"risk_averse\": 0.07, \"risk_prone\": 0.43, \"budget\": 0.25},\n"
        " \"budget\": {\"risk\": 0.05, \"curve_u\": [0.0, 0.1, 0.25, 0.5, 1.0],\n"
        "             \"curve_upper\": [0.0, 0.01, 0.05, 0.2, 0.6]},\n"
        " \"fit\": {\"a\": 0.8, \"b\": -0.05, \"r2\": 0.6}, \"bins\": [{\"lo\": 0, \"hi\": 0.1}]}\n",
        "{\"thresholds\": {\"risk_averse\": -1.5, \"risk_prone\": 2.0}}",
        "{\"thresholds\": {\"budget\": 0.5}, \"budget\": {\"curve_u\": [], \"curve_upper\": []}}",
        ("{\"thresholds\": {\"risk_averse\": \"x\"}, \"budget\": {\"curve_u\": [0.2, 0.1], "
         "\"curve_upper\": [0, 1]}}"),
        "[1, 2, 3]",
    };
    static const uint8_t sel[] = {3, 0, 2, 1, 4};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        uint8_t buf[1024];
        size_t n = strlen(files[i]);
        buf[0] = sel[i];
        buf[1] = 40;
        memcpy(buf + 2, files[i], n);
        char name[32];
        snprintf(name, sizeof name, "calib-%zu.json", i);
        fuzz_write_seed(argv[1], name, buf, n + 2);
    }
    fuzz_write_seed(argv[1], "risk-text", "\x04\x00" "budget:0.25\n", 14);
    return 0;
}

#endif
