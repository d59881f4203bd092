/* SPDX-License-Identifier: MIT */
/* Command line: run, check a config (-t), the ctl client, --version. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#ifdef BERTH_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "app.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "mem.h"
#include "preflight.h"
#include "tls.h"

static int usage(void)
{
    fprintf(stderr, "usage: berth [-c FILE] [-t] [-l LEVEL]\n"
                    "       berth ctl [-s SOCKET] COMMAND ...\n"
                    "       berth --version\n");
    return 2;
}

static int print_version(void)
{
    const char *je = "not linked";
#ifdef BERTH_WITH_JEMALLOC
    size_t sz = sizeof(je);
    if (mallctl("version", &je, &sz, NULL, 0) != 0)
        je = "unknown";
#endif
    printf("berth %s\nlibevent %s\nOpenSSL %s\nllhttp %d.%d.%d\njemalloc %s\n", BERTH_VERSION,
           event_get_version(), OpenSSL_version(OPENSSL_VERSION_STRING), LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, je);
    return 0;
}

/* `berth -t`: prints every error as FILE:LINE:COL: message (FILE: message for the files
 * and users the config names), then every warning as FILE:LINE:COL: warning: message
 * (warnings alone still pass). */
static int check_config(const char *path)
{
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = path ? bth_config_load_file(path, &err)
                                  : bth_config_load_buffer("<default>", bth_config_default_yaml,
                                                           strlen(bth_config_default_yaml), &err);
    for (size_t i = 0; cfg != NULL && i < cfg->nlisteners; i++)
        bth_tls_check_listener(&cfg->listeners[i], &err);
    if (cfg != NULL)
        bth_preflight(cfg, false, &err); /* what the start would trip on outside the file */
    for (size_t i = 0; i < err.n; i++)
        fprintf(stderr, "%s\n", err.msgs[i]);
    for (size_t i = 0; cfg != NULL && i < cfg->warnings.n; i++)
        fprintf(stderr, "%s\n", cfg->warnings.msgs[i]);
    size_t nerr = err.n;
    bth_err_fini(&err);
    if (cfg == NULL || nerr > 0) {
        bth_config_destroy(cfg);
        return 1;
    }
    printf("%s: ok\n", path ? path : "<default>");
    bth_config_destroy(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    bth_mem_init();
    bth_log_init();
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
        return bth_ctl_main(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "--version") == 0)
        return print_version();
    const char *path = NULL;
    int test_only = 0, opt;
    while ((opt = getopt(argc, argv, "c:tl:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'l':
            if (bth_log_set_level(optarg) != 0)
                return usage();
            break;
        default:
            return usage();
        }
    }
    if (optind != argc)
        return usage();
    if (test_only)
        return check_config(path);
    struct bth_app app;
    if (bth_app_start(&app, path) != 0) {
        bth_app_fini(&app);
        return 1;
    }
    int code = bth_app_run(&app);
    bth_app_fini(&app);
    bth_log(BTH_LOG_NOTICE, "stopped");
    return code;
}
