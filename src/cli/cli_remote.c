/* cli_remote.c: see cli_remote.h. */
#include "cli/cli_remote.h"

#include <stdio.h>

#include "cli/cli_signal.h"
#include "uhlm/tokenizer.h"

int cli_remote_setup(const char *cmd, const char *server, const char *token_file, cli_remote *r) {
    uhlm_error err = {{0}};
    r->token_len = 0;
    r->fallback_after_s = uhlm_remote_default_params().fallback_after_s;
    if (server && uhlm_remote_parse_addr(server, r->host, sizeof r->host, r->port, sizeof r->port,
                                         &err)) {
        fprintf(stderr, "uhlm %s: --server: %s\n", cmd, err.msg);
        return 2;
    }
    if (token_file && !server) {
        fprintf(stderr, "uhlm %s: --auth-token-file needs --server\n", cmd);
        return 2;
    }
    if ((r->tls_ca || r->tls_insecure) && !server) {
        fprintf(stderr, "uhlm %s: --%s needs --server\n", cmd,
                r->tls_ca ? "tls-ca" : "tls-insecure");
        return 2;
    }
    if (r->tls_ca && r->tls_insecure) {
        fprintf(stderr, "uhlm %s: give --tls-ca or --tls-insecure, not both\n", cmd);
        return 2;
    }
    if (r->tls_insecure)
        fprintf(stderr, "uhlm %s: WARNING: --tls-insecure: the server's certificate is NOT "
                        "verified; anyone on the path can pose as the server and read the "
                        "link. For tests only: use --tls-ca in deployments\n", cmd);
    if (token_file &&
        uhlm_remote_load_token(token_file, r->token, sizeof r->token, &r->token_len, &err)) {
        fprintf(stderr, "uhlm %s: --auth-token-file: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}

uhlm_verifier *cli_remote_verifier(const cli_remote *r, const uhlm_model *slm, const char *client,
                                   double connect_timeout_s, double read_timeout_s,
                                   uint64_t seed, uhlm_remote_log_fn log, uhlm_error *err) {
    uhlm_remote_params rp = uhlm_remote_default_params();
    rp.host = r->host;
    rp.port = r->port;
    rp.auth = r->token_len ? r->token : NULL;
    rp.auth_len = r->token_len;
    rp.n_vocab = uhlm_model_config(slm)->vocab_size;
    rp.fingerprint = uhlm_tokenizer_fingerprint(uhlm_model_tokenizer(slm));
    rp.client = client;
    rp.connect_timeout_s = connect_timeout_s;
    rp.read_timeout_s = read_timeout_s;
    rp.require = r->require;
    rp.fallback_after_s = r->fallback_after_s;
    /* Ctrl-C ends a wait in the fallback window at once; the run then stops at its next token */
    rp.cancel = cli_sigint_cancel;
    rp.tls_ca = r->tls_ca;
    rp.tls_insecure = r->tls_insecure;
    /* the backoff jitter only spreads reconnects of many devices; it never touches tokens */
    rp.jitter_seed = seed ^ (uint64_t)(uhlm_now() * 1e9);
    rp.log = log;
    return uhlm_remote_new(&rp, err);
}
