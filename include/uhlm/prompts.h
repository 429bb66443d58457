/* prompts.h: prompt sets for calibration and evaluation.
 *
 * Two formats, told apart by the first non-blank byte of the file:
 *   '{'  JSONL: one object per line. Blank lines are allowed; "id" may be missing (then
 *        "line-N").
 *   '['  a JSON array of the same objects. Ids default to "item-N".
 * Each object is either {"id", "prompt"} or an Alpaca record {"id", "instruction", "input",
 * "output"} (as /work/shared/data/alpaca-200.jsonl has them, one per line). For Alpaca the
 * prompt - the user turn when a chat template is applied - is exactly the instruction when
 * "input" is missing, null or "", and otherwise instruction + "\n\n" + input, with no other
 * change (no trimming). "output", the dataset's reference answer, is kept as `reference`
 * (NULL when absent) for quality metrics; it must be a string when present.
 * Anything else, a line that is not an object, a missing or non-string prompt, an empty
 * prompt, or a duplicate id is an error that names the file and the line or element.
 *
 * The train/test split is by id, not by position, so adding or reordering prompts does not
 * move the others between the parts: an id goes to train when FNV-1a(id) mod 10000 is below
 * frac·10000. */
#ifndef UHLM_PROMPTS_H
#define UHLM_PROMPTS_H

#include "common.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uhlm_prompt {
    char *id;
    char *text;
    char *reference;  /* Alpaca "output", or NULL */
    int instruction;  /* 1 for Alpaca records */
} uhlm_prompt;

typedef struct uhlm_prompt_set {
    uhlm_prompt *items;
    int n;
} uhlm_prompt_set;

/* Parses a buffer (name is used in messages). On error *out is left empty. */
UHLM_API int uhlm_prompts_parse(const char *buf, size_t len, const char *name, uhlm_prompt_set *out,
                       uhlm_error *err);
UHLM_API int uhlm_prompts_load(const char *path, uhlm_prompt_set *out, uhlm_error *err);
/* uhlm_prompts_load of a file of at most max_bytes (0: the default, see uhlm_read_file_max). */
UHLM_API int uhlm_prompts_load_max(const char *path, uint64_t max_bytes, uhlm_prompt_set *out,
                          uhlm_error *err);
UHLM_API void uhlm_prompts_free(uhlm_prompt_set *s);

/* 1 when the id falls in the training part of a split with train fraction frac in [0, 1]. */
UHLM_API int uhlm_prompt_is_train(const char *id, double frac);
/* Copies the items of one part (train = 1 or 0) into out (deep copies). */
UHLM_API int uhlm_prompts_split(const uhlm_prompt_set *in, double frac, int train, uhlm_prompt_set *out,
                       uhlm_error *err);

#ifdef __cplusplus
}
#endif
#endif
