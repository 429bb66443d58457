/* cli_remote.h: the --server / --auth-token-file options shared by `uhlm run` and `uhlm eval`,
 * and the remote verifier they build from them. */
#ifndef UHLM_CLI_REMOTE_H
#define UHLM_CLI_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "uhlm/model.h"
#include "uhlm/remote.h"
#include "uhlm/wire.h"

typedef struct cli_remote {
    char host[256], port[16];
    char token[UHLM_WIRE_MAX_AUTH + 1];
    size_t token_len; /* 0: no token */
    int require;      /* --require-server: no generation with the SLM alone */
    double fallback_after_s; /* --fallback-after; cli_remote_setup sets the library's default */
    const char *tls_ca; /* --tls-ca F: TLS, verifying the server against F */
    int tls_insecure;   /* --tls-insecure: TLS without verification */
} cli_remote;

/* --tls-ca and --tls-insecure, bound to a cli_remote's fields (r: its address) */
#define CLI_ARGS_TLS_CLIENT(r) \
    CLI_ARG(CLI_TLS_CA, &(r)->tls_ca), CLI_ARG(CLI_TLS_INSECURE, &(r)->tls_insecure)

/* Validates the options after parsing and reads the token file. Returns 0, or the exit
 * status (2 for a usage error, 1 for an unreadable token file) after printing the message
 * under cmd's name. server may be NULL (in-process). */
int cli_remote_setup(const char *cmd, const char *server, const char *token_file, cli_remote *r);

/* The remote verifier for a device whose vocabulary is slm's. client names the device in the
 * server's logs; log receives connection events. NULL with err. */
uhlm_verifier *cli_remote_verifier(const cli_remote *r, const uhlm_model *slm, const char *client,
                                   double connect_timeout_s, double read_timeout_s,
                                   uint64_t seed, uhlm_remote_log_fn log, uhlm_error *err);

#endif
