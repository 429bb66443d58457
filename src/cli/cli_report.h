/* cli_report.h: the device run's report (uhlm_device_report) as JSON, for run and eval. */
#ifndef UHLM_CLI_REPORT_H
#define UHLM_CLI_REPORT_H

#include "uhlm/device.h"

typedef struct cJSON cJSON;

/* One object with the parameters and statistics (the keys `uhlm run --json` prints); NULL on
 * allocation failure. The caller owns it (cJSON_Delete). */
cJSON *cli_device_report_json(const uhlm_device_report *r);

#endif
