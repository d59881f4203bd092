/* SPDX-License-Identifier: MIT */
/* `berth ctl`: a minimal HTTP/1.1 client for the control socket, so containers need no
 * curl for their stop hooks and health checks. */
#include "ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"

static const char *default_socket(void)
{
    const char *env = getenv("BERTH_SOCKET");
    return env && *env ? env : "./berth.sock";
}

static int usage(void)
{
    fprintf(stderr,
            "usage: berth ctl [-s SOCKET] COMMAND\n"
            "  groups                         list target groups\n"
            "  health GROUP                   target health of a group\n"
            "  register GROUP TARGET...       TARGET: 10.0.1.5:8080, [fd00::5]:8080 or\n"
            "  deregister [--wait] GROUP TARGET...   Id=10.0.1.5,Port=8080\n"
            "  metrics | healthz | reload | config\n");
    return 2;
}

int bth_ctl_parse_target(const char *s, char *id, unsigned idsz, unsigned *port)
{
    const char *ip = NULL, *p = NULL;
    size_t iplen = 0;
    if (strncmp(s, "Id=", 3) == 0) {
        ip = s + 3;
        const char *comma = strchr(ip, ',');
        if (comma == NULL || strncmp(comma, ",Port=", 6) != 0)
            return -1;
        iplen = (size_t)(comma - ip);
        p = comma + 6;
    } else if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        ip = s + 1;
        iplen = (size_t)(end - ip);
        p = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        ip = s;
        iplen = (size_t)(colon - s);
        p = colon + 1;
    }
    char *endp;
    long v = strtol(p, &endp, 10);
    if (iplen == 0 || iplen >= idsz || *endp != '\0' || v < 1 || v > 65535)
        return -1;
    memcpy(id, ip, iplen);
    id[iplen] = '\0';
    *port = (unsigned)v;
    struct bth_addr a;
    return bth_addr_from_ip_port(id, *port, &a);
}

/* Sends one request and prints the body. Returns the HTTP status or -1. */
static int call(const char *sock, const char *method, const char *path, const char *body)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "berth ctl: socket path too long\n");
        return -1;
    }
    strcpy(sun.sun_path, sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        fprintf(stderr, "berth ctl: connect() to %s failed: %s\n", sock, strerror(errno));
        if (fd != -1)
            close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, blen);
    if (write(fd, head, (size_t)n) != n || (blen && write(fd, body, blen) != (ssize_t)blen)) {
        fprintf(stderr, "berth ctl: write() failed: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf != NULL && (r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (nb == NULL)
                break;
            buf = nb;
        }
    }
    close(fd);
    if (buf == NULL)
        return -1;
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    char *b = strstr(buf, "\r\n\r\n");
    if (b != NULL)
        fputs(b + 4, status >= 200 && status < 300 ? stdout : stderr);
    free(buf);
    return status;
}

static int targets_call(const char *sock, const char *verb, bool wait, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    json_t *arr = json_array();
    for (int i = 1; i < argc; i++) {
        char id[64];
        unsigned port;
        if (bth_ctl_parse_target(argv[i], id, sizeof(id), &port) != 0) {
            fprintf(stderr, "berth ctl: invalid target \"%s\"\n", argv[i]);
            json_decref(arr);
            return 2;
        }
        json_array_append_new(arr, json_pack("{s:s,s:i}", "Id", id, "Port", (int)port));
    }
    json_t *root = json_pack("{s:o}", "Targets", arr);
    if (wait)
        json_object_set_new(root, "Wait", json_true());
    char *body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char path[512];
    snprintf(path, sizeof(path), "/v1/target-groups/%s/%s", argv[0], verb);
    int st = call(sock, "POST", path, body);
    free(body);
    return st >= 200 && st < 300 ? 0 : 1;
}

int bth_ctl_main(int argc, char **argv)
{
    const char *sock = default_socket();
    int i = 0;
    if (i + 1 < argc && strcmp(argv[i], "-s") == 0) {
        sock = argv[i + 1];
        i += 2;
    }
    if (i >= argc)
        return usage();
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **rv = argv + i;
    char path[512];
    int st;
    if (strcmp(cmd, "groups") == 0) {
        st = call(sock, "GET", "/v1/target-groups", NULL);
    } else if (strcmp(cmd, "health") == 0 && rest == 1) {
        snprintf(path, sizeof(path), "/v1/target-groups/%s/health", rv[0]);
        st = call(sock, "GET", path, NULL);
    } else if (strcmp(cmd, "register") == 0) {
        return targets_call(sock, "register", false, rest, rv);
    } else if (strcmp(cmd, "deregister") == 0) {
        bool wait = rest > 0 && strcmp(rv[0], "--wait") == 0;
        return targets_call(sock, "deregister", wait, rest - wait, rv + wait);
    } else if (strcmp(cmd, "metrics") == 0) {
        st = call(sock, "GET", "/metrics", NULL);
    } else if (strcmp(cmd, "healthz") == 0) {
        st = call(sock, "GET", "/healthz", NULL);
    } else if (strcmp(cmd, "reload") == 0) {
        st = call(sock, "POST", "/v1/reload", NULL);
    } else if (strcmp(cmd, "config") == 0) {
        st = call(sock, "GET", "/v1/config", NULL);
    } else {
        return usage();
    }
    return st >= 200 && st < 300 ? 0 : 1;
}
