/* test_prompts.c: Alpaca records in the prompt loader (prompts.h).
 *
 * - JSONL Alpaca lines (the format of alpaca-200.jsonl) and JSON arrays give the user turn
 *   "instruction" or "instruction\n\ninput", keep "output" as the reference and mark the item
 *   as an instruction; {"prompt"} lines keep working alongside;
 * - a non-string "output" is refused; the train/test split copies references;
 * - the shared alpaca-200.jsonl, when present, loads whole (200 records with references). */
#include "check.h"
#include "uhlm/prompts.h"

static int parse(const char *text, uhlm_prompt_set *s, uhlm_error *err) {
    return uhlm_prompts_parse(text, strlen(text), "t.jsonl", s, err);
}

int main(void) {
    uhlm_prompt_set s;
    uhlm_error err = {{0}};
    const char *jsonl =
        "{\"id\": \"a-0\", \"instruction\": \"Give three tips.\", \"input\": \"\", \"output\": "
        "\"1. Eat.\"}\n"
        "{\"id\": \"a-1\", \"instruction\": \"Translate.\", \"input\": \" Hola \", \"output\": "
        "\"Hello\"}\n"
        "{\"id\": \"p\", \"prompt\": \"Once upon a time\"}\n"
        "{\"id\": \"a-2\", \"instruction\": \"No input key.\"}\n";
    CHECKF(parse(jsonl, &s, &err) == 0 && s.n == 4, "%s", err.msg);
    if (s.n == 4) {
        CHECK(!strcmp(s.items[0].text, "Give three tips.") && s.items[0].instruction &&
              !strcmp(s.items[0].reference, "1. Eat."));
        /* joined exactly: no trimming of the input */
        CHECK(!strcmp(s.items[1].text, "Translate.\n\n Hola ") &&
              !strcmp(s.items[1].reference, "Hello"));
        CHECK(!strcmp(s.items[2].text, "Once upon a time") && !s.items[2].instruction &&
              s.items[2].reference == NULL);
        CHECK(!strcmp(s.items[3].text, "No input key.") && s.items[3].reference == NULL);
        uhlm_prompt_set tr;
        CHECK(uhlm_prompts_split(&s, 1.0, 1, &tr, &err) == 0 && tr.n == 4);
        CHECK(tr.n == 4 && !strcmp(tr.items[1].reference, "Hello") && tr.items[1].instruction);
        uhlm_prompts_free(&tr);
    }
    uhlm_prompts_free(&s);
    CHECK(parse("[{\"instruction\": \"i\", \"input\": \"x\", \"output\": \"o\"}]", &s, &err) == 0 &&
          s.n == 1 && !strcmp(s.items[0].text, "i\n\nx") && !strcmp(s.items[0].reference, "o"));
    uhlm_prompts_free(&s);
    CHECK(parse("{\"instruction\": \"i\", \"output\": 3}\n", &s, &err) != 0 &&
          strstr(err.msg, "\"output\" must be a string") && strstr(err.msg, "line 1"));
    CHECK(parse("{\"instruction\": 5}\n", &s, &err) != 0 &&
          strstr(err.msg, "\"instruction\" must be a string"));

    /* the shared data folder sits beside the models one (../shared/{models,data}) */
    const char *src = getenv("UHLM_SOURCE_DIR"), *models = getenv("UHLM_MODELS");
    const char *fmt[3] = {"%s/../data/alpaca-200.jsonl", "%s/../shared/data/alpaca-200.jsonl",
                          "%s/../../shared/data/alpaca-200.jsonl"};
    const char *base[3] = {models, src ? src : "..", src ? src : ".."};
    char path[1024] = "";
    for (int i = 0; i < 3 && !path[0]; i++) {
        if (!base[i]) continue;
        snprintf(path, sizeof path, fmt[i], base[i]);
        if (access(path, R_OK) != 0) path[0] = '\0';
    }
    if (!path[0]) {
        printf("SKIP: alpaca-200.jsonl not found (../shared/data)\n");
    } else {
        CHECKF(uhlm_prompts_load(path, &s, &err) == 0 && s.n == 200, "%s", err.msg);
        int refs = 0, instr = 0;
        for (int i = 0; i < s.n; i++) {
            refs += s.items[i].reference != NULL && s.items[i].reference[0];
            instr += s.items[i].instruction;
        }
        CHECK(refs == 200 && instr == 200);
        CHECK(s.n > 0 && !strcmp(s.items[0].text, "Give three tips for staying healthy."));
        uhlm_prompts_free(&s);
    }
    return check_report();
}
