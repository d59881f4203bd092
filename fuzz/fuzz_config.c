/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the YAML config loader (bth_config_load_buffer) and destroy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    if (size)
        memcpy(buf, data, size);
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("fuzz.yaml", buf, size, &err);
    if (cfg != NULL) {
        for (size_t i = 0; i < cfg->ntarget_groups; i++)
            (void)bth_config_find_group(cfg, cfg->target_groups[i].name);
        bth_config_destroy(cfg);
    } else if (err.n == 0) {
        __builtin_trap(); /* a failed load must say why */
    }
    bth_err_fini(&err);
    free(buf);
    return 0;
}
