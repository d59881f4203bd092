#!/usr/bin/python3
"""Writes the seeds of fuzz_h2 into fuzz/corpus/h2/: HTTP/2 client byte streams without the
connection preface (fuzz_h2 sends it), as a client would send them: SETTINGS, HEADERS with
HPACK-encoded requests (no Huffman, so the fuzzer sees the strings), DATA, WINDOW_UPDATE,
RST_STREAM, PING, GOAWAY, PRIORITY, CONTINUATION, padding. A frame whose stream id has the
reserved bit set (pause=True) makes fuzz_h2 pause after it until berth and the target are
idle (see fuzz_h2.c). Needs python3-hpack: /usr/bin/python3 fuzz/gen_h2_seeds.py"""
import os
import struct

from hpack import Encoder

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, sid, payload=b"", pause=False):
    sid |= 0x80000000 if pause else 0
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Client:
    def __init__(self):
        self.enc = Encoder()

    def block(self, headers):
        return self.enc.encode(headers, huffman=False)

    def headers(self, sid, headers, end_stream=True, pause=False, flags=0):
        f = END_HEADERS | flags | (END_STREAM if end_stream else 0)
        return frame(HEADERS, f, sid, self.block(headers), pause)


def req(method, path, authority="live.test", extra=()):
    return [(":method", method), (":scheme", "http"), (":path", path),
            (":authority", authority)] + list(extra)


def data(sid, payload, end=False, pause=False):
    return frame(DATA, END_STREAM if end else 0, sid, payload, pause)


def window_update(sid, inc, pause=False):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc), pause)


def rst(sid, code=8, pause=False):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code), pause)


def ping(payload=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, payload)


def goaway(last, code=0, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


SETTINGS_START = settings((3, 100), (4, 1 << 20), (2, 0)) + settings(ack=True)


def seeds():
    s = {}
    c = Client()
    s["get"] = SETTINGS_START + c.headers(1, req("GET", "/"))

    c = Client()
    paths = ["/chunked", "/big", "/close", "/204", "/304", "/103", "/100", "/headers", "/500",
             "/garbage", "/short", "/reset", "/101", "/early"]
    b = SETTINGS_START + window_update(0, 1 << 20)
    for i, p in enumerate(paths):
        b += c.headers(1 + 2 * i, req("GET", p), pause=(i % 3 == 2))
    s["answers"] = b

    c = Client()
    s["actions"] = SETTINGS_START + b"".join([
        c.headers(1, req("GET", "/", "fixed.test")),
        c.headers(3, req("GET", "/redirect/a/../b?x=1&y=%41")),
        c.headers(5, req("GET", "/dead/x")),
        c.headers(7, req("GET", "/", extra=[("x-env", "canary-1")])),
        c.headers(9, req("GET", "/q?v=2")),
        c.headers(11, req("GET", "/s", "a.sticky.test",
                          extra=[("cookie", "BERTHTG=abc"), ("cookie", "BERTH-live=zzz")])),
        c.headers(13, req("HEAD", "/chunked")),
        c.headers(15, req("OPTIONS", "*")),
    ])

    c = Client()
    body = b"x" * 3000
    s["post_length"] = SETTINGS_START + c.headers(
        1, req("POST", "/post", extra=[("content-length", str(len(body))),
                                       ("content-type", "text/plain")]),
        end_stream=False) + data(1, body[:1000]) + data(1, body[1000:], end=True)

    c = Client()
    s["post_chunked_trailers"] = SETTINGS_START + c.headers(
        1, req("POST", "/chunked", extra=[("te", "trailers")]), end_stream=False, pause=True) + \
        data(1, b"part one,", pause=True) + data(1, b"part two") + \
        c.headers(1, [("x-checksum", "123")], end_stream=True)

    c = Client()
    s["post_early_answer"] = SETTINGS_START + c.headers(
        1, req("PUT", "/early", extra=[("content-length", "5000")]), end_stream=False, pause=True) + \
        data(1, b"y" * 4000, pause=True) + window_update(0, 100) + data(1, b"z" * 1000, end=True)

    c = Client()
    s["expect_continue"] = SETTINGS_START + c.headers(
        1, req("POST", "/100", extra=[("expect", "100-continue"), ("content-length", "4")]),
        end_stream=False, pause=True) + data(1, b"abcd", end=True)

    c = Client()
    s["big_window"] = settings((4, 1000)) + settings(ack=True) + c.headers(1, req("GET", "/big"), pause=True) + \
        window_update(1, 200000) + window_update(0, 200000, pause=True) + \
        settings((4, 70000)) + window_update(1, 1 << 20)

    c = Client()
    s["rst_inflight"] = SETTINGS_START + c.headers(1, req("GET", "/slow"), pause=True) + rst(1, pause=True) + \
        c.headers(3, req("GET", "/slow")) + rst(3) + c.headers(5, req("GET", "/")) + rst(5, 0)

    c = Client()
    s["ping_goaway"] = SETTINGS_START + ping() + ping(b"abcdefgh", ack=True) + \
        c.headers(1, req("GET", "/slow"), pause=True) + goaway(1, 0, b"bye") + \
        frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 15))

    c = Client()
    blk = c.block(req("GET", "/continuation", extra=[("x-a", "1" * 100), ("x-b", "2" * 100)]))
    s["continuation"] = SETTINGS_START + frame(HEADERS, END_STREAM, 1, blk[:20]) + \
        frame(CONTINUATION, 0, 1, blk[20:60]) + frame(CONTINUATION, END_HEADERS, 1, blk[60:])

    c = Client()
    blk = c.block(req("GET", "/padded"))
    s["padded_priority"] = SETTINGS_START + frame(
        HEADERS, END_STREAM | END_HEADERS | PADDED | PRIO, 1,
        bytes([4]) + struct.pack(">IB", 0, 200) + blk + b"\0" * 4) + \
        c.headers(3, req("POST", "/p", extra=[("content-length", "3")]), end_stream=False) + \
        frame(DATA, PADDED | END_STREAM, 3, bytes([2]) + b"abc" + b"\0\0")

    c = Client()
    s["large_headers"] = SETTINGS_START + c.headers(
        1, req("GET", "/h", extra=[("x-big-%d" % i, "v" * 200) for i in range(20)])) + \
        c.headers(3, req("GET", "/" + "a" * 1500))

    c = Client()
    s["bad_requests"] = SETTINGS_START + b"".join([
        c.headers(1, [(":method", "CONNECT"), (":authority", "live.test:443")]),
        c.headers(3, req("GET", "/", extra=[("host", "other.test")])),
        c.headers(5, req("GET", "/", extra=[("connection", "close")])),
        c.headers(7, [(":method", "GET"), (":scheme", "http"), (":path", "/nohost")]),
        c.headers(9, req("GET", "/%2e%2e/x//y", extra=[("content-length", "1")])),
        c.headers(11, req("GET", "/", extra=[("transfer-encoding", "chunked")])),
        c.headers(13, req("POST", "/dead/body", extra=[("content-length", "2")]), end_stream=False),
        data(13, b"hi", end=True),
    ])

    c = Client()
    s["reuse_pool"] = SETTINGS_START + b"".join(
        c.headers(1 + 2 * i, req("GET", "/" if i % 2 else "/chunked"), pause=True) for i in range(6))
    # Two big answers to a client that opened its windows but does not read until it has
    # sent everything: berth's output piles up (CONN_OUT_HIGH, STREAM_DATA_MAX).
    c = Client()
    s["no_read_big"] = settings((4, 1 << 24)) + settings(ack=True) + window_update(0, 1 << 24) + \
        b"".join(c.headers(1 + 2 * i, req("GET", "/big")) for i in range(4)) + \
        c.headers(9, req("POST", "/post", extra=[("content-length", "4000")]), end_stream=False) + \
        data(9, b"w" * 4000, end=True)

    # Ends: by the number of pauses mod 3 (fuzz_h2.c): 1) silent until the stop deadline,
    # 2) the PING unanswered.
    c = Client()
    s["end_deadline"] = SETTINGS_START + c.headers(1, req("GET", "/slow"), pause=True) + \
        c.headers(3, req("POST", "/chunked"), end_stream=False) + data(3, b"half a body")
    c = Client()
    s["end_ping_timeout"] = SETTINGS_START + c.headers(1, req("GET", "/slow"), pause=True) + \
        c.headers(3, req("GET", "/chunked"), pause=True) + ping()

    # Request trailers in flight when berth's answer (a fixed response, before the body) and
    # its RST_STREAM NO_ERROR went out: to be ignored (RFC 9113 5.1), then stream 3 served.
    c = Client()
    s["trailers_after_early_answer"] = SETTINGS_START + c.headers(
        1, req("POST", "/upload", "fixed.test"), end_stream=False, pause=True) + \
        data(1, b"some body") + c.headers(1, [("x-checksum", "1")], end_stream=True, pause=True) + \
        c.headers(3, req("GET", "/"), pause=True)

    # Floods (README, "HTTP/2"): beyond the limits berth answers GOAWAY ENHANCE_YOUR_CALM.
    c = Client()
    s["flood_rst"] = SETTINGS_START + b"".join(
        c.headers(1 + 2 * i, req("GET", "/slow")) + rst(1 + 2 * i) for i in range(230))[:8000]
    s["flood_ping"] = SETTINGS_START + ping() * 210
    c = Client()
    s["flood_empty"] = SETTINGS_START + c.headers(1, req("POST", "/post"), end_stream=False) + \
        data(1, b"") * 20 + data(1, b"", end=True)
    s["flood_settings"] = settings((1, 4096)) * 150 + frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 1)) * 60
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, b in seeds().items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b)
        print(name, len(b))


if __name__ == "__main__":
    main()
