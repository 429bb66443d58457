/* cli_signal.h: Ctrl-C for the long commands (generate, run). The first SIGINT sets a flag
 * that the token loop (or the library's cancel callback, common.h) reads before the next
 * token, so the command prints what it has and exits 130; a second SIGINT kills at once. */
#ifndef UHLM_CLI_SIGNAL_H
#define UHLM_CLI_SIGNAL_H

/* The shell's exit status for a process ended by SIGINT (128 + 2). */
#define CLI_EXIT_INTERRUPTED 130

/* Installs the one-shot SIGINT handler. Returns 0, or -1 with a message on stderr. */
int cli_sigint_install(const char *cmd);
/* Puts back the default action (for the time after the token loop). */
void cli_sigint_restore(void);
/* Nonzero once SIGINT has arrived. */
int cli_interrupted(void);
/* A uhlm_cancel_fn reading the same flag (user is unused). */
int cli_sigint_cancel(void *user);

#endif
