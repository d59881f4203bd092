/* SPDX-License-Identifier: MIT */
/* gRPC over HTTP/2: content type, grpc-timeout, HTTP-to-gRPC status mapping. */
#include "grpc.h"

#include <strings.h>

bool bth_grpc_content_type(const char *v, size_t n)
{
    static const char ct[] = "application/grpc";
    size_t k = sizeof(ct) - 1;
    if (n < k || strncasecmp(v, ct, k) != 0)
        return false;
    return n == k || v[k] == '+' || v[k] == ';';
}

int bth_grpc_timeout_ms(const char *v, size_t n, uint64_t *ms)
{
    if (n < 2 || n > 9)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t per_ms_num, per_ms_den; /* milliseconds = x * num / den */
    switch (v[n - 1]) {
    case 'H':
        per_ms_num = 3600000, per_ms_den = 1;
        break;
    case 'M':
        per_ms_num = 60000, per_ms_den = 1;
        break;
    case 'S':
        per_ms_num = 1000, per_ms_den = 1;
        break;
    case 'm':
        per_ms_num = 1, per_ms_den = 1;
        break;
    case 'u':
        per_ms_num = 1, per_ms_den = 1000;
        break;
    case 'n':
        per_ms_num = 1, per_ms_den = 1000000;
        break;
    default:
        return -1;
    }
    /* 8 digits times an hour in ms stays far below 2^64 */
    *ms = (x * per_ms_num + per_ms_den - 1) / per_ms_den;
    return 0;
}

const char *bth_grpc_code_name(int code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return code >= 0 && code < (int)(sizeof(names) / sizeof(names[0])) ? names[code] : "UNKNOWN";
}

enum bth_grpc_code bth_grpc_code_of_http(int status)
{
    switch (status) {
    case 400:
        return BTH_GRPC_INTERNAL;
    case 401:
        return BTH_GRPC_UNAUTHENTICATED;
    case 403:
        return BTH_GRPC_PERMISSION_DENIED;
    case 404:
        return BTH_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return BTH_GRPC_UNAVAILABLE;
    default:
        return BTH_GRPC_UNKNOWN;
    }
}
