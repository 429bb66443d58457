/* calib_samples.h: the calibration samples of `uhlm calibrate` (DESIGN §2.3): hlm runs over a
 * prompt set with u recorded, one (u, β, accepted, outright) sample per verified token
 * (calib.h), kept apart by the prompt's side of a train/test split by id (prompts.h). */
#ifndef UHLM_CALIB_SAMPLES_H
#define UHLM_CALIB_SAMPLES_H

#include "calib.h"
#include "common.h"
#include "device.h"
#include "eval.h"
#include "model.h"
#include "payload.h"
#include "uncertainty.h"
#include "prompts.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The calibration sample of a token event: 1 and *out for a verified token with finite u and
 * β, else 0. One definition, so calibrate and eval count the same tokens. */
UHLM_API int uhlm_calib_sample_of_event(const uhlm_token_event *ev, uhlm_calib_sample *out);

/* A growable array of samples. An append that cannot grow it drops the sample and sets oom,
 * so a caller checks once after a prompt. */
typedef struct uhlm_calib_samples {
    uhlm_calib_sample *s;
    size_t n, cap;
    int oom;
} uhlm_calib_samples;
UHLM_API void uhlm_calib_samples_push(uhlm_calib_samples *a, const uhlm_calib_sample *smp);
UHLM_API void uhlm_calib_samples_free(uhlm_calib_samples *a);

typedef struct uhlm_calib_collect_opts {
    uhlm_device_params dp; /* the hlm run: sampling, payload, uncertainty, n_gen */
    double split;          /* train fraction of the split by id, in (0, 1) */
    int limit;             /* only the first prompts; 0: all */
    int chat;              /* prompts are user turns of the SLM's chat template */
    int n_threads;
    uhlm_simd simd;        /* the contexts' kernels; UHLM_SIMD_AUTO (0): the best */
    uint64_t seed;         /* each prompt's seed is uhlm_eval_prompt_seed(seed, id) */
    int want_csv;          /* keep the per-token records as CSV text */
} uhlm_calib_collect_opts;

typedef struct uhlm_calib_collection {
    uhlm_calib_samples train, test; /* in token order */
    int n_train_prompts, n_test_prompts;
    char *csv; /* want_csv: prompt_id,split,index,pos,draft,token,u,beta,x_d,y_d,accepted,
                  outright per verified token, with a header; else NULL */
    size_t csv_len;
} uhlm_calib_collection;
UHLM_API void uhlm_calib_collection_free(uhlm_calib_collection *c);

/* Runs hlm with u recorded on every prompt in use. progress may be NULL (uhlm_progress of
 * eval.h, initialised by the caller for the number of prompts used). */
UHLM_API int uhlm_calib_collect(uhlm_model *slm, uhlm_model *llm, const uhlm_prompt_set *ps,
                       const uhlm_calib_collect_opts *o, uhlm_progress *progress,
                       uhlm_calib_collection *out, uhlm_error *err);

/* ---- the analysis and calib.json of `uhlm calibrate` ---- */

typedef struct uhlm_calib_analysis {
    uhlm_linfit fit;     /* on the training part */
    uhlm_linfit fit_te;  /* on the test part, when have_te */
    int have_te;
    double r2_test;      /* the training fit scored on the test tokens; NaN when undefined */
    double delta, delta_te;
    double averse, prone; /* NaN unless have_th */
    int have_th;
    uhlm_error th_err;    /* why not, when !have_th */
    double budget;        /* R */
    uhlm_calib_curve curve;
    double u_budget;
} uhlm_calib_analysis;
UHLM_API void uhlm_calib_analysis_free(uhlm_calib_analysis *a);

/* Fit, thresholds and budget curve of a collection. -1 with err when the split leaves a part
 * without prompts, the training fit fails or the curve cannot be built; thresholds that do
 * not exist (a flat or falling fit) are not an error: have_th = 0 and th_err says why. */
UHLM_API int uhlm_calib_analyse(const uhlm_calib_collection *c, double split, double budget,
                       uhlm_calib_analysis *out, uhlm_error *err);

/* The settings calib.json records, as given. */
typedef struct uhlm_calib_info {
    const char *slm, *llm, *prompts;
    long n_gen, top_k, samples;
    double temperature, top_p, theta_max;
    const uhlm_payload_spec *payload;
    uhlm_unc_method method;
    uint64_t seed;
    double split;
    double wall_s;
} uhlm_calib_info;

/* calib.json as text with a final newline (malloc'd; free()), or NULL when out of memory. */
UHLM_API char *uhlm_calib_report_json(const uhlm_calib_collection *c, const uhlm_calib_analysis *a,
                             const uhlm_calib_info *info, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
