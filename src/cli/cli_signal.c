/* cli_signal.c: the SIGINT flag of the CLI. */
#include "cli/cli_signal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/* The one piece of process-wide mutable state in the CLI: a signal handler can reach nothing
 * else. The library never sees it; it only calls the cancel callback that reads it. */
static volatile sig_atomic_t sigint_seen;

static void on_sigint(int sig) {
    (void)sig;
    sigint_seen = 1;
}

int cli_sigint_install(const char *cmd) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: a second Ctrl-C takes the default action, so a stuck call (a model load,
     * a blocking read from a server) can still be killed; SA_RESTART keeps I/O in progress
     * (stdout, the link to a server) from failing with EINTR, the loop sees the flag anyway */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0) {
        fprintf(stderr, "uhlm %s: cannot install the SIGINT handler: %s\n", cmd, strerror(errno));
        return -1;
    }
    return 0;
}

void cli_sigint_restore(void) {
    signal(SIGINT, SIG_DFL);
}

int cli_interrupted(void) {
    return sigint_seen != 0;
}

int cli_sigint_cancel(void *user) {
    (void)user;
    return sigint_seen != 0;
}
