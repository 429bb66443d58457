/* cli_mkdir.h: `mkdir -p` for the commands that write files into folders (eval, calibrate). */
#ifndef UHLM_CLI_MKDIR_H
#define UHLM_CLI_MKDIR_H

#include "uhlm/common.h"

/* Creates dir and every missing folder above it. 0, or -1 with err naming the folder that
 * could not be made (or that exists as something else). */
int cli_mkdir_p(const char *dir, uhlm_error *err);
/* The same for the folder holding file path (nothing to do for a bare name). */
int cli_mkdir_parent(const char *path, uhlm_error *err);

#endif
