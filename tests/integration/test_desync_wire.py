# SPDX-License-Identifier: MIT
"""desync_mitigation_mode on the wire for all 158 cases of tests/data/desync-cases.

Each case is sent on a fresh client connection to a real berth in each mode (one berth and
one target per mode) and must get what ELB's desync mitigation table (README.md, "Desync
mitigation") says for its `expected.tier`:

| tier       | monitor | defensive     | strictest |
|------------|---------|---------------|-----------|
| Compliant  | forward | forward       | forward   |
| Acceptable | forward | forward       | 400       |
| Ambiguous  | forward | forward-close | 400       |
| Severe     | forward | 400           | 400       |

forward: the target gets exactly this one request (same method, target and body length),
the client gets its 200 and the connection stays open for a second request. forward-close:
the same, but the response says Connection: close, berth closes the client connection and
does not reuse the target connection. 400: the client gets 400, the connection is closed
and the target sees nothing, not even a TCP connection. Deviations berth has by design are
listed below with their reason (REFUSED_BY_PARSER, UNSUPPORTED_TRANSFER_CODING,
REFUSED_UNFRAMEABLE, REFUSED_BY_RFC9112; MENDED_TARGET lists the targets berth rewrites); every other case must match the table exactly. A request that is not
persistent by its version (HTTP/1.0 without keep-alive, HTTP/0.9: RFC 7230 6.3) cannot
keep the connection open, so there "forward" means answered, then closed. Each mode is one
test that runs all cases and reports every mismatch at once.
"""

import os

import pytest
import yaml

from httpwire import Client, connection_tokens, read_response

CASE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "data", "desync-cases"))
N_CASES = 158

TABLE = {
    "Compliant": {"monitor": "forward", "defensive": "forward", "strictest": "forward"},
    "Acceptable": {"monitor": "forward", "defensive": "forward", "strictest": "400"},
    "Ambiguous": {"monitor": "forward", "defensive": "forward-close", "strictest": "400"},
    "Severe": {"monitor": "forward", "defensive": "400", "strictest": "400"},
}
MODES = ("monitor", "defensive", "strictest")

# Cases are named "<file>: <name>" as in tests/unit/desync_cases.inc (a name repeated within
# a file gets " (2)", " (3)", ...).
#
# berth parses requests with llhttp (the loose build of Debian's node-llhttp 8.1) and always
# re-frames what it forwards. A head llhttp refuses is mended when the classifier rates it
# Compliant or Acceptable (MENDED_TARGET below); any other such request gets 400 and close in
# EVERY mode, monitor included, and the target sees nothing. Found empirically (berth logs "bad request from ...: <llhttp
# error>"); the reason says what in the case llhttp stops at. Test-side additions (Host as the
# last field, the body) play no part: every error here is in the case's own bytes.
REFUSED_BY_PARSER = {
    # whitespace or a separator in/around a field name (RFC 7230 3.2.4: MUST reject with 400)
    "ambiguous.yaml: Transfer-Encoding with a trailing space in name":
        "space before ':' (llhttp: Invalid header field char)",
    "ambiguous.yaml: Transfer-Encoding with a trailing tab in name":
        "HTAB before ':' (llhttp: Invalid header token)",
    "ambiguous.yaml: Transfer-Encoding with a space in the middle":
        "space inside the name (llhttp: Invalid character in header name)",
    "ambiguous.yaml: Transfer-Encoding[white-space] and Content-Length":
        "space before ':' (llhttp: Invalid header field char)",
    "ambiguous.yaml: Transfer-Encoding[white-space] and Content-Length[white-space]":
        "space before ':' (llhttp: Invalid header field char)",
    "real-life-test-cases.yaml: Transfer-Encoding[tab]: chunked":
        "HTAB before ':' (llhttp: Invalid header token)",
    "severe.yaml: Content-Length[white-space] and Content-Length":
        "space before ':' (llhttp: Invalid header field char)",
    "severe.yaml: Transfer-Encoding[white-space] and Transfer-Encoding":
        "space before ':' (llhttp: Invalid header field char)",
    # a field line starting with whitespace (obs-fold as the first field)
    "ambiguous.yaml: [white-space]Transfer-Encoding and Content-Length":
        "first field line starts with a space (llhttp: Unexpected space after start line)",
    "ambiguous.yaml: [white-space]Transfer-Encoding and [white-space]Content-Length":
        "first field line starts with a space (llhttp: Unexpected space after start line)",
    "ambiguous.yaml: Only white-spaces header name":
        "first field line starts with a space (llhttp: Unexpected space after start line)",
    "ambiguous.yaml: Transfer-Encoding with UTF8 spaces":
        "first field line starts with a space (llhttp: Unexpected space after start line)",
    "severe.yaml: [white-space]Content-Length and Content-Length":
        "first field line starts with a space (llhttp: Unexpected space after start line)",
    # a control or non-ASCII byte in a field name
    "ambiguous.yaml: \\x01Transfer-Encoding with a non-printable character":
        "\\x01 in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: \\x01\\x01Transfer-Encoding with a non-printable character":
        "\\x01 in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: \\x01\\x01Content-Length with a non-printable character":
        "\\x01 in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: \\x01Content-Length with a non-printable character":
        "\\x01 in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: Transfer-Encoding Latin Small Letter Long S":
        "non-ASCII byte in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: Transfer-Encoding Latin Small Letter Dotless I":
        "non-ASCII byte in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: Content-Length with UTF8 spaces":
        "non-ASCII spaces before ':' (llhttp: Invalid header field char)",
    "ambiguous.yaml: Transfer-Encoding with a UTF8 delimiter":
        "non-ASCII byte in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: Transfer-Encoding with arbitrary non-ASCII chars":
        "non-ASCII byte in the name (llhttp: Invalid header token)",
    "ambiguous.yaml: Content-Length with arbitrary non-ASCII chars":
        "non-ASCII byte in the name (llhttp: Invalid header token)",
    "bad-header-characters.yaml: \\x01Transfer-Encoding":
        "\\x01 in the name (llhttp: Invalid header token)",
    "bad-header-characters.yaml: Transfer-Encoding\\x01":
        "\\x01 in the name (llhttp: Invalid header token)",
    "bad-header-characters.yaml: \\x01Content-Length":
        "\\x01 in the name (llhttp: Invalid header token)",
    "bad-header-characters.yaml: Content-Length\\x01":
        "\\x01 in the name (llhttp: Invalid header token)",
    "edge-cases.yaml: Non-compliant character does not shadow bad character":
        "HTAB before ':' and NUL in a value (llhttp: Invalid header token)",
    "real-life-test-cases.yaml: \\x00Transfer-Encoding: chunked":
        "NUL in a name (llhttp: Invalid header token)",
    "real-life-test-cases.yaml: CRLF": "NUL in a name (llhttp: Invalid header token)",
    "severe.yaml: \\r in name is bad": "CR in a name (llhttp: Invalid header token)",
    "severe.yaml: \\n in name is bad": "LF in a name (llhttp: Invalid header token)",
    "severe.yaml: \\0 in name is bad": "NUL in a name (llhttp: Invalid header token)",
    "severe.yaml: \\0 at the start of a line": "NUL in a name (llhttp: Invalid header token)",
    # a control byte in a field value (only HTAB is allowed)
    "bad-header-characters.yaml: Transfer-Encoding: \\x01chunked":
        "\\x01 in a value (llhttp: Invalid header value char)",
    "bad-header-characters.yaml: Transfer-Encoding: chunked\\x01":
        "\\x01 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Bad non-essential header does not shadow bad Content-Length":
        "\\x12 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Bad non-essential header does not shadow bad Transfer-Encoding":
        "\\x11 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Non-compliant customer header does not shadow ambiguous "
    "Transfer-Encoding for GET": "\\x01 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Non-compliant customer header does not shadow ambiguous "
    "Content-Length for HEAD": "\\x01 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Bad header does not shadow other bad headers":
        "\\x11 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Bad URI does not shadow essential bad headers":
        "\\x11 in a value (llhttp: Invalid header value char)",
    "edge-cases.yaml: Bad URI does not shadow essential ambiguous headers":
        "\\x01 in a value (llhttp: Invalid header value char)",
    "real-life-test-cases.yaml: Null in Headers":
        "NUL in a value (llhttp: Invalid header value char)",
    "real-life-test-cases.yaml: Transfer-Encoding: \\x00chunked":
        "NUL in a value (llhttp: Invalid header value char)",
    "severe.yaml: Bad character in Transfer-Encoding value: chunked\\x11":
        "\\x11 in a value (llhttp: Invalid header value char)",
    "severe.yaml: \\n in value is bad": "bare LF in a value (llhttp: Invalid header value char)",
    "severe.yaml: \\0 in value is bad": "NUL in a value (llhttp: Invalid header value char)",
    "severe.yaml: \\0 at the start of a value":
        "NUL in a value (llhttp: Invalid header value char)",
    "severe.yaml: \\0 at the end of a value": "NUL in a value (llhttp: Invalid header value char)",
    "severe.yaml: Multiline headers are deprecated":
        "obs-fold / bare LF in a value (llhttp: Invalid header value char)",
    "severe.yaml: Multiline headers are deprecated (with \\n only)":
        "bare LF in a value (llhttp: Invalid header value char)",
    "severe.yaml: Http Engine missed LF": "bare LF in a value (llhttp: Invalid header value char)",
    "severe.yaml: Http Engine missed CR":
        "bare CR in a value (llhttp: Missing expected LF after header value)",
    "severe.yaml: \\r in value is bad":
        "bare CR in a value (llhttp: Missing expected LF after header value)",
    "real-life-test-cases.yaml: Size Issue":
        "bare CR in a value (llhttp: Missing expected LF after header value)",
    # Content-Length llhttp cannot read as one number
    "ambiguous.yaml: Duplicate Content-Length":
        "two Content-Length fields, even equal (llhttp: Duplicate Content-Length)",
    "real-life-test-cases.yaml: Two Identical Fields - CL":
        "two Content-Length fields, even equal (llhttp: Duplicate Content-Length)",
    "severe.yaml: Multiple Content-Length":
        "two different Content-Length fields (llhttp: Duplicate Content-Length)",
    "bad-header-characters.yaml: Content-Length: \\x01 1000":
        "\\x01 in Content-Length (llhttp: Invalid character in Content-Length)",
    "bad-header-characters.yaml: Content-Length: 1000\\x01 ":
        "\\x01 in Content-Length (llhttp: Invalid character in Content-Length)",
    "bad-header-characters.yaml: Content-Length: 1000\\xa0":
        "non-ASCII byte in Content-Length (llhttp: Invalid character in Content-Length)",
    "severe.yaml: Bad Content-Length: 1000,1000":
        "a list (llhttp: Invalid character in Content-Length)",
    "severe.yaml: Bad Content-Length: 1000 1000":
        "two numbers (llhttp: Invalid character in Content-Length)",
    "severe.yaml: Bad Content-Length: 1000.1000":
        "not an integer (llhttp: Invalid character in Content-Length)",
    "severe.yaml: Bad Content-Length (64-bits overflow)":
        "2^64 (llhttp: Content-Length overflow)",
    "severe.yaml: Bad character in Content-Length value: 1000\\x11":
        "\\x11 in Content-Length (llhttp: Invalid character in Content-Length)",
    # chunked applied twice, or a coding after chunked
    "real-life-test-cases.yaml: Two Identical Fields - TE":
        "chunked twice (llhttp: Invalid `Transfer-Encoding` header value)",
    "real-life-test-cases.yaml: Invalid Transfer-Encoding":
        "chunked twice (llhttp: Invalid `Transfer-Encoding` header value)",
    "real-life-test-cases.yaml: Chunks Priority on Content-Length.2":
        "a coding after chunked (llhttp: Invalid `Transfer-Encoding` header value)",
    "severe.yaml: Multiple Transfer-Encoding: chunked":
        "chunked twice (llhttp: Invalid `Transfer-Encoding` header value)",
    "severe.yaml: Multiple Transfer-Encoding: chunked,chunked":
        "chunked twice (llhttp: Invalid `Transfer-Encoding` header value)",
    # the request line
    "ambiguous.yaml: Transfer-Encoding for empty protocol, which is HTTP/0.9":
        "'POST /foo/bar ' with no version (llhttp: Expected HTTP/)",
    "ambiguous.yaml: Content-Length for empty protocol, which is HTTP/0.9":
        "'POST /foo/bar ' with no version (llhttp: Expected HTTP/)",
    "severe.yaml: Bad method": "\\x01 in the method (llhttp: Invalid method encountered)",
    "uri-specific-test-cases.yaml: \\x01 in URI":
        "\\x01 in the target (llhttp: Invalid char in url path)",
    "uri-specific-test-cases.yaml: [space] in URI resulted in a bad version":
        "'HTTP/1.1 HTTP/1.1' (llhttp: Expected CRLF after version)",
    "uri-specific-test-cases.yaml: \\r in URI": "bare CR in the target (llhttp: Expected CRLF)",
    "uri-specific-test-cases.yaml: \\n in URI":
        "bare LF in the target ends the line; 'HTTP/1.1 HTTP/1.1' then reads as a field "
        "(llhttp: Invalid header token)",
    "uri-specific-test-cases.yaml: \\0 in URI":
        "NUL in the target (llhttp: Invalid char in url path)",
    "uri-specific-test-cases.yaml: \\0 at the start of URI":
        "NUL in the target (llhttp: Unexpected start char in url)",
}

# berth frames a request body only by a final chunked coding (RFC 9112 6.1) and answers any
# other final coding with 501 (README: "Transfer-Encoding"; RFC 9112 6.1 lets a server do
# so). Where the table says forward (or forward-close) these cases get 501 and close instead,
# with nothing sent to the target; where it says 400 they get 400 as usual (the desync check
# runs first). A list that ends in chunked ("gzip, chunked", five TE fields, chunked with
# parameters) is forwarded like any other chunked request.
UNSUPPORTED_TRANSFER_CODING = {
    "bad-header-characters.yaml: Transfer-Encoding: \\xa0chunked": "\\xa0chunked (Severe)",
    "bad-header-characters.yaml: Transfer-Encoding: chunked\\xa0": "chunked\\xa0 (Severe)",
    "severe.yaml: Unknown Transfer-Encoding: xchunked": "xchunked (Severe)",
    # with a Content-Length too (TE frames the body; the CL is dropped when it is chunked)
    "ambiguous.yaml: Both Transfer-Encoding and Content-Length": "gzip, with CL",
    "real-life-test-cases.yaml: Transfer-Encoding: chunk": "chunk, with CL (Severe)",
    "real-life-test-cases.yaml: Transfer-Encoding: identity and Content-Length":
        "identity, with CL",
    "real-life-test-cases.yaml: Transfer-Encoding: xchunked": "xchunked, with CL (Severe)",
}

# Severe cases llhttp does parse, but not as the case reads: berth refuses them with 400 in
# every mode, monitor included, because forwarding them would forward something else
# (berth's unframeable() check): {case: why}.
REFUSED_UNFRAMEABLE = {
    # loose llhttp takes "\r\n\r" followed by any byte as the end of the head; the bytes
    # after it would become a second request
    "real-life-test-cases.yaml: \\rTransfer-Encoding: chunked":
        "bare CR at a line start: the head does not end with an empty line",
    "real-life-test-cases.yaml: \\rTransfer-Encoding: chunked without CL":
        "bare CR at a line start: the head does not end with an empty line",
    "real-life-test-cases.yaml: \\rContent-Length without TE":
        "bare CR at a line start: the head does not end with an empty line",
}

# Compliant and Acceptable heads llhttp refuses are mended before berth parses and forwards
# them (src/proto/http_tolerate.c; README, "Desync mitigation"): a field whose name is not a token
# is dropped, whitespace before a colon removed, control bytes in values become spaces, the
# request line is rewritten (HTTP/1.2 read as HTTP/1.1, no version as HTTP/1.0, extra
# spaces dropped). Where that changes the target the target sees: {case: its target}
MENDED_TARGET = {
    "rfc-compliant.yaml: Empty URI": "/",  # RFC 9112 3.2.1: an empty path is sent as "/"
    "uri-specific-test-cases.yaml: [space] in URI": "/endpoint_a?param=not%20escaped%20spaces",
}

# Requests RFC 9112 calls faulty whatever their tier: berth answers 400 and closes in every
# mode (README, "Request targets and Host"). {case: why}
REFUSED_BY_RFC9112 = {
    "ambiguous.yaml: Transfer-Encoding for HTTP/1.0":
        "HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 6.1)",
    "real-life-test-cases.yaml: HTTP Version.1.0 and TE":
        "HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 6.1)",
}

# A Severe case monitor forwards as llhttp reads it: "GET /endpoint_a\tHTTP/1.1" CRLF (HTAB
# is allowed in the target) is a request line without a version, HTTP/0.9 with fields; it
# is forwarded with that target, answered, then closed as HTTP/0.9 is, so the
# "GET\t/endpoint_b..." after its head is never read. {case: the target the target sees}
MONITOR_AS_HTTP09 = {
    "uri-specific-test-cases.yaml: Request Smuggling in URI": "/endpoint_a\tHTTP/1.1",
}

# How a case becomes bytes: METHOD SP URI SP VERSION CRLF, then name ": " value CRLF per
# field, then CRLF, exactly as tests/unit/gen_desync_cases.py builds the heads that
# tests/unit/test_desync.c classifies: YAML resolves the escapes of double-quoted scalars
# (the two plain-scalar URIs keep their literal backslash, as YAML says), every code point is
# written as UTF-8 ("\xa0" is C2 A0), scalars are read as strings. "Host: x" is added as the
# LAST field (unless the case has one), so the case's own bytes stay a verbatim prefix and
# berth classifies the very head the unit test classifies; then the body (see body_for).
HOST_FIELD = "Host: x"
MAX_BODY = 8 << 20
RESPONSE_TIMEOUT = 2.0
CLOSE_TIMEOUT = 1.0


class Case:
    def __init__(self, key, doc):
        self.key = key
        self.method = doc["method"]
        self.uri = doc["uri"]
        self.version = doc["version"]
        self.headers = [(h["name"], h["value"]) for h in doc.get("headers") or []]
        self.tier = doc["expected"]["tier"]

    def fields(self, name):
        """Values of the fields whose name is exactly <name> (any case, nothing around it)."""
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def body(self):
        return body_for(self)

    def wire(self):
        out = "%s %s %s\r\n" % (self.method, self.uri, self.version)
        for n, v in self.headers:
            out += "%s: %s\r\n" % (n, v)
        if not self.fields("host"):
            out += HOST_FIELD + "\r\n"
        out += "\r\n"
        return out.encode("utf-8") + self.body()

    def persistent(self):
        """Whether the connection outlives a forwarded request (RFC 7230 6.3): HTTP/1.1, or
        HTTP/1.0 asking for keep-alive; HTTP/0.9 never."""
        version = self.version.strip(" \t")
        if version.startswith("HTTP/1.") and version[7:].isdigit() and version != "HTTP/1.0":
            return True  # HTTP/1.2 and up are read as HTTP/1.1 (RFC 9110 2.5)
        return version == "HTTP/1.0" and \
            "keep-alive" in connection_tokens(self.headers)


def body_for(case):
    """A body that completes the request as a conforming parser frames it.

    Only fields named exactly Transfer-Encoding / Content-Length frame a body: look-alikes
    (Content_Length, " Content-Length", "Content-Length\\x01") are other fields to such a
    parser, so they get no body (or the request is refused, when the name is not a token).
    - Transfer-Encoding whose final coding is chunked: the empty chunked body "0\\r\\n\\r\\n",
      also when Content-Length is there too (RFC 7230 3.3.3: TE overrides CL).
    - otherwise the first Content-Length whose value (OWS trimmed) is all digits: that many
      bytes. Two different lengths ("1000" and "100") are ambiguous by nature: the first is
      taken; such shapes are refused before any body is read. Values that are not a number
      (1000,1000; \\x011000) frame nothing, nor does 2^64 (above MAX_BODY): refused too.
    - otherwise none.
    """
    te = ",".join(case.fields("transfer-encoding"))
    if te:
        final = te.split(",")[-1].split(";")[0].strip(" \t").lower()
        if final == "chunked":
            return b"0\r\n\r\n"
    for v in case.fields("content-length"):
        v = v.strip(" \t")
        if v.isascii() and v.isdigit():
            n = int(v)
            return b"b" * n if n <= MAX_BODY else b""
    return b""


def load_cases():
    cases, seen = [], {}
    for fname in sorted(f for f in os.listdir(CASE_DIR) if f.endswith(".yaml")):
        with open(os.path.join(CASE_DIR, fname), encoding="utf-8") as f:
            docs = yaml.load(f, Loader=yaml.BaseLoader)
        for doc in docs:
            key = "%s: %s" % (fname, doc["name"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += " (%d)" % seen[key]
            cases.append(Case(key, doc))
    return cases


CASES = load_cases()


def expected(case, mode):
    if case.key in REFUSED_BY_PARSER or case.key in REFUSED_UNFRAMEABLE or \
            case.key in REFUSED_BY_RFC9112:
        return "400"
    if mode == "monitor" and case.key in MONITOR_AS_HTTP09:
        return "forward-nonpersistent"
    want = TABLE[case.tier][mode]
    if case.key in UNSUPPORTED_TRANSFER_CODING and want != "400":
        return "501"
    if want == "forward" and not case.persistent():
        return "forward-nonpersistent"
    return want


# ---- one case on the wire ----

def _is_close(resp):
    return "close" in connection_tokens(resp.headers)


def _describe(resp):
    if resp is None:
        return "no response"
    return "%d%s" % (resp.status, " (Connection: close)" if _is_close(resp) else "")


def _read(c, method):
    try:
        return read_response(c.reader, method), None
    except (OSError, EOFError, ValueError) as e:
        return None, repr(e)


def _check_forwarded(case, mode, new, problems):
    """The target got exactly this request: one, same method, target and body length."""
    if len(new) != 1:
        problems.append("target saw %d requests: %r" % (len(new), new))
        return None
    req = new[0]
    # A fragment ("...&prev=index#form") is never forwarded: no request target has one
    # (RFC 9112 3.2), and the rules never saw it.
    target, body = MENDED_TARGET.get(case.key, case.uri.split("#", 1)[0]), case.body()
    want_len = 0 if body == b"0\r\n\r\n" else len(body)
    if mode == "monitor" and case.key in MONITOR_AS_HTTP09:
        target, want_len = MONITOR_AS_HTTP09[case.key], 0
    if req.method != case.method or req.target.encode("latin-1") != target.encode("utf-8"):
        problems.append("target saw %s %r, want %s %r" % (req.method, req.target, case.method,
                                                          target))
    if len(req.body) != want_len:
        problems.append("target got a %d-byte body, sent %d" % (len(req.body), want_len))
    names = [n.lower() for n, _ in req.headers]
    if "transfer-encoding" in names and "content-length" in names:
        problems.append("target got both Transfer-Encoding and Content-Length")
    return req


def run_case(port, b, case, mode, expect):
    """Sends <case> on a fresh connection; returns (what happened, [problems])."""
    method = "HEAD" if case.method == "HEAD" else "GET"
    problems = []
    n0, conns0 = len(b.requests), b.connections
    got = []
    with Client(port, timeout=RESPONSE_TIMEOUT) as c:
        try:
            c.send(case.wire())
        except OSError as e:  # refused early; the answer may still be readable
            got.append("send: %r" % e)
        r, err = _read(c, method)
        got.append(_describe(r) if err is None else "no response (%s)" % err)

        if expect in ("400", "501"):
            if r is None or r.status != int(expect):
                problems.append("want %s" % expect)
            if c.wait_closed(CLOSE_TIMEOUT) is None:
                problems.append("connection not closed")
            extra = bytes(c.reader.buf)
            if extra:  # a 400 or 501 to HEAD has no body either
                problems.append("more bytes after the %s: %r" % (expect, extra[:200]))
            new = b.requests[n0:]
            if new:
                problems.append("the target saw a refused request: %r" % new)
            if b.connections != conns0:
                problems.append("berth opened %d target connection(s)" % (b.connections - conns0))
            got.append("target saw %d" % len(new))
            return "; ".join(got), problems

        req = _check_forwarded(case, mode, b.requests[n0:], problems)
        got.append("target saw %d" % (len(b.requests) - n0))
        if r is None or r.status != 200:
            problems.append("want the target's 200")
            return "; ".join(got), problems

        if expect == "forward":
            if r is not None and _is_close(r):
                problems.append("Connection: close on a forwarded request")
            try:
                c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError as e:
                problems.append("second request: %r" % e)
            r2, err = _read(c, "GET")
            got.append("second request: %s" % (_describe(r2) if err is None else err))
            if r2 is None or r2.status != 200 or not b.requests or \
                    b.requests[-1].target != "/next":
                problems.append("keep-alive lost: no 200 for a second request")
        elif expect == "forward-close":
            if r is not None and not _is_close(r):
                problems.append("no Connection: close on an ambiguous request")
            if c.wait_closed(CLOSE_TIMEOUT) is None:
                problems.append("client connection kept after an ambiguous request")
            if c.reader.buf:
                problems.append("more bytes after the response: %r" % bytes(c.reader.buf[:200]))
        elif expect == "forward-nonpersistent":
            if c.wait_closed(CLOSE_TIMEOUT) is None:
                problems.append("connection kept after a non-persistent (%r) request"
                                % case.version)
            if c.reader.buf:
                problems.append("more bytes after the response: %r" % bytes(c.reader.buf[:200]))
        else:
            raise AssertionError("unknown outcome %r" % expect)

    if expect == "forward-close" and req is not None:
        # The target connection must not be reused: the next request takes another one.
        probe = Client(port, timeout=RESPONSE_TIMEOUT)
        try:
            probe.send(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
            rp, err = _read(probe, "GET")
        finally:
            probe.close()
        last = b.requests[-1] if b.requests else None
        if rp is None or rp.status != 200 or last is None or last.target != "/probe":
            problems.append("probe after the ambiguous request failed: %s" % (err or _describe(rp)))
        elif last.conn_id == req.conn_id:
            problems.append("target connection reused after an ambiguous request")
    return "; ".join(got), problems


# ---- tests ----

def test_case_data_and_lists():
    """All 158 cases load, and every listed deviation names an existing case."""
    assert len(CASES) == N_CASES
    keys = {c.key for c in CASES}
    for name, table in (("REFUSED_BY_PARSER", REFUSED_BY_PARSER),
                        ("UNSUPPORTED_TRANSFER_CODING", UNSUPPORTED_TRANSFER_CODING),
                        ("REFUSED_UNFRAMEABLE", REFUSED_UNFRAMEABLE),
                        ("REFUSED_BY_RFC9112", REFUSED_BY_RFC9112),
                        ("MENDED_TARGET", MENDED_TARGET)):
        stale = sorted(set(table) - keys)
        assert not stale, "%s names cases not in the data: %r" % (name, stale)
    both = set(REFUSED_BY_PARSER) & (set(UNSUPPORTED_TRANSFER_CODING) | set(REFUSED_UNFRAMEABLE))
    assert not both, both
    assert all(c.tier == "Severe" for c in CASES if c.key in REFUSED_UNFRAMEABLE)


@pytest.mark.parametrize("mode", MODES)
def test_desync_cases_on_the_wire(berth, backend, http_config, mode):
    """Every case gets what the mode's table says (or its listed deviation) from a real berth."""
    b = backend()
    lb = berth(http_config([b.addr], desync_mitigation_mode=mode))
    mismatches = []
    for case in CASES:
        expect = expected(case, mode)
        got, problems = run_case(lb.port, b, case, mode, expect)
        if problems:
            mismatches.append("%s | %s | %s | expected %s | got %s | %s" % (
                case.key, case.tier, mode, expect, got, "; ".join(problems)))
    assert lb.alive(), "berth died"
    assert not b.errors, "target handler raised: %r" % b.errors
    assert not mismatches, "%d of %d cases differ in %s mode:\n%s" % (
        len(mismatches), len(CASES), mode, "\n".join(mismatches))
