#!/usr/bin/python3
"""Writes the seeds of fuzz_h2_target into fuzz/corpus/h2_target/: what an HTTP/2 target
sends after its SETTINGS (fuzz_h2_target sends that) to berth's streams 1 (GET /a), 3 (a gRPC
call) and 5 (a 40 KB upload): a SETTINGS ack, answer HEADERS (HPACK without Huffman, so the
fuzzer sees the strings), DATA, trailers, WINDOW_UPDATE for the upload, and the ways a
target ends things (RST_STREAM, GOAWAY, an interim 100, a trailers-only gRPC answer). A
frame whose stream id has the reserved bit set (pause=True) makes the harness pause after
it. Needs python3-hpack: /usr/bin/python3 fuzz/gen_h2_target_seeds.py"""
import os
import struct

from hpack import Encoder

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2_target")

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, sid, payload=b"", pause=False):
    sid |= 0x80000000 if pause else 0
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


class Target:
    def __init__(self):
        self.enc = Encoder()

    def headers(self, sid, fields, end_stream=False, pause=False):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, sid, self.enc.encode(fields, huffman=False), pause)


def window(sid, n):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", n))


def grpc_msg(payload):
    return b"\0" + struct.pack(">I", len(payload)) + payload


def seeds():
    ack = frame(SETTINGS, ACK, 0)
    t = Target()
    yield "all_answered", ack + window(0, 1 << 20) + window(5, 1 << 20) + \
        t.headers(1, [(":status", "200"), ("content-length", "2")]) + frame(DATA, END_STREAM, 1, b"ok") + \
        t.headers(3, [(":status", "200"), ("content-type", "application/grpc")]) + \
        frame(DATA, 0, 3, grpc_msg(b"\x0a\x02hi")) + \
        t.headers(3, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True) + \
        t.headers(5, [(":status", "201"), ("content-length", "0")], end_stream=True)
    t = Target()
    yield "paused", ack + t.headers(1, [(":status", "200")], pause=True) + \
        frame(DATA, 0, 1, b"chunk one ", pause=True) + frame(DATA, END_STREAM, 1, b"two") + \
        t.headers(3, [(":status", "200"), ("content-type", "application/grpc"),
                      ("grpc-status", "5"), ("grpc-message", "not%20found")], end_stream=True) + \
        window(0, 100000) + window(5, 100000)
    t = Target()
    yield "resets", ack + frame(RST_STREAM, 0, 1, struct.pack(">I", 2)) + \
        frame(RST_STREAM, 0, 3, struct.pack(">I", 7), pause=True) + \
        t.headers(5, [(":status", "413")], end_stream=True)
    t = Target()
    yield "goaway", ack + t.headers(1, [(":status", "200"), ("content-length", "5")]) + \
        frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0), pause=True) + frame(DATA, END_STREAM, 1, b"hello")
    t = Target()
    yield "interim", ack + t.headers(5, [(":status", "100")], pause=True) + window(5, 65535) + \
        window(0, 65535) + t.headers(5, [(":status", "200")]) + frame(DATA, 0, 5, b"x" * 100) + \
        t.headers(5, [("x-trailer", "t")], end_stream=True) + \
        t.headers(1, [(":status", "204")], end_stream=True)
    t = Target()
    yield "length_and_trailers", ack + \
        t.headers(3, [(":status", "200"), ("content-length", "7"), ("trailer", "grpc-status")]) + \
        frame(DATA, 0, 3, grpc_msg(b"\x0a\x00")) + \
        t.headers(3, [("grpc-status", "0")], end_stream=True) + \
        frame(PING, 0, 0, b"12345678")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
