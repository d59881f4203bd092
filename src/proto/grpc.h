/* SPDX-License-Identifier: MIT */
/* gRPC over HTTP/2, the few parts a proxy reads (doc/PROTOCOL-HTTP2.md of the gRPC
 * project): the content type, the grpc-timeout field, and the mapping of HTTP statuses to
 * gRPC codes (doc/http-grpc-status-mapping.md). No I/O; any thread. */
#ifndef BERTH_GRPC_H
#define BERTH_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes berth itself answers with. */
enum bth_grpc_code {
    BTH_GRPC_OK = 0,
    BTH_GRPC_UNKNOWN = 2,
    BTH_GRPC_DEADLINE_EXCEEDED = 4,
    BTH_GRPC_PERMISSION_DENIED = 7,
    BTH_GRPC_UNIMPLEMENTED = 12,
    BTH_GRPC_INTERNAL = 13,
    BTH_GRPC_UNAVAILABLE = 14,
    BTH_GRPC_UNAUTHENTICATED = 16,
};

/* A content type of gRPC: "application/grpc", alone or followed by "+proto", ";..." and
 * the like (case-insensitive). */
bool bth_grpc_content_type(const char *v, size_t n);

/* Reads a grpc-timeout value (1 to 8 digits and a unit of H, M, S, m, u or n) into
 * milliseconds, rounded up (a positive timeout never becomes 0). Returns 0, or -1 when
 * malformed. */
int bth_grpc_timeout_ms(const char *v, size_t n, uint64_t *ms);

/* "OK", "CANCELLED", ... "UNAUTHENTICATED" for 0..16, else "UNKNOWN". */
const char *bth_grpc_code_name(int code);

/* The gRPC code for an HTTP status berth answers with: 400 INTERNAL, 401 UNAUTHENTICATED,
 * 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, else UNKNOWN. */
enum bth_grpc_code bth_grpc_code_of_http(int status);

#endif /* BERTH_GRPC_H */
