/* main.c: the `uhlm` binary, a dispatcher over subcommands (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} subcommand;

static const subcommand cmds[] = {
    {"generate", cmd_generate, "generate text with one model"},
    {"run", cmd_run, "hybrid SLM+LLM generation (modes slm, llm, hlm, rand, uhlm)"},
    {"calibrate", cmd_calibrate, "fit rejection vs uncertainty, derive skip thresholds"},
    {"eval", cmd_eval, "evaluate the five modes over prompts and an SNR grid"},
    {"embed", cmd_embed, "mean-pooled hidden-state embedding of a text"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"info", cmd_info, "describe a model file (architecture, shapes, types, vocabulary, template)"},
    {"convert", cmd_convert, "write a GGUF file from a llama2.c checkpoint (or random weights)"},
    {"serve", cmd_serve, "serve the LLM to devices over the network (verification server)"},
    {"bench", cmd_bench, "measure prompt/decode speed against the memory-bandwidth bound"},
};

static void usage(FILE *f) {
    fprintf(f,
            "uhlm %s: uncertainty-aware hybrid language-model inference\n\n"
            "usage: uhlm COMMAND [options]   (uhlm COMMAND --help for details)\n\ncommands:\n",
            uhlm_version());
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f,
            "\nModel files are looked up as given, then in $UHLM_MODELS, ./models and "
            "../shared/models.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("uhlm %s\n", uhlm_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "uhlm: unknown command '%s' (see 'uhlm --help')\n", argv[1]);
    return 2;
}
