/* SPDX-License-Identifier: MIT */
/* The one table of HTTP reason phrases, for berth's own answers on the data plane and the
 * control API alike. Any thread; no state. */
#ifndef BERTH_HTTP_STATUS_H
#define BERTH_HTTP_STATUS_H

/* The reason phrase of <status> (RFC 9110 section 15), or one naming its class. */
const char *bth_http_reason(int status);

#endif /* BERTH_HTTP_STATUS_H */
