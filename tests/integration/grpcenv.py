# SPDX-License-Identifier: MIT
"""Real gRPC servers and clients for the tests (Debian's python3-grpcio and
python3-grpc-tools). The test service's .proto is compiled at import, into a temporary
directory, with grpc_tools.protoc; it holds an echo service with the four call kinds and
the standard health service (grpc.health.v1)."""

import importlib
import os
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_tools import protoc

PROTO = """
syntax = "proto3";
package berthtest;

service Echo {
  rpc Unary (Msg) returns (Msg);
  rpc ServerStream (Msg) returns (stream Msg);
  rpc ClientStream (stream Msg) returns (Msg);
  rpc Bidi (stream Msg) returns (stream Msg);
}

message Msg {
  string text = 1;
  int32 n = 2;
  string server = 3;
  double sleep = 4;
}
"""

HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;

message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
}
"""


def _compile():
    out = tempfile.mkdtemp(prefix="berth-grpc-")
    with open(os.path.join(out, "berthtest.proto"), "w") as f:
        f.write(PROTO)
    with open(os.path.join(out, "health.proto"), "w") as f:
        f.write(HEALTH_PROTO)
    for name in ("berthtest.proto", "health.proto"):
        rc = protoc.main(["protoc", "-I" + out, "--python_out=" + out, "--grpc_python_out=" + out,
                          os.path.join(out, name)])
        assert rc == 0, "protoc failed on %s" % name
    sys.path.insert(0, out)
    return (importlib.import_module("berthtest_pb2"), importlib.import_module("berthtest_pb2_grpc"),
            importlib.import_module("health_pb2"), importlib.import_module("health_pb2_grpc"))


pb, pb_grpc, health_pb, health_grpc = _compile()
Msg = pb.Msg


class EchoServicer(pb_grpc.EchoServicer):
    def __init__(self, server):
        self.s = server

    def _note(self, context):
        self.s.calls += 1
        md = dict(context.invocation_metadata())
        self.s.metadata.append(md)
        # Cancellation (the client's RST_STREAM, or berth's at a deadline) reaches here.
        context.add_callback(lambda: self.s.ended.append(context.is_active()))
        return md

    def _echo_metadata(self, context, md):
        if "x-echo" in md:
            context.send_initial_metadata((("x-echo", md["x-echo"]),))
            context.set_trailing_metadata((("x-trailer", "t-" + md["x-echo"]),))

    def _maybe_sleep(self, req, context):
        end = time.monotonic() + req.sleep
        while time.monotonic() < end:
            if not context.is_active():
                self.s.cancelled.append(req.text)
                return False
            time.sleep(0.02)
        return True

    def Unary(self, req, context):
        md = self._note(context)
        self._echo_metadata(context, md)
        if self.s.gate is not None:
            self.s.gate(req)
        if not self._maybe_sleep(req, context):
            return Msg()
        if req.text == "fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return Msg(text=req.text, n=req.n, server=self.s.name)

    def ServerStream(self, req, context):
        md = self._note(context)
        self._echo_metadata(context, md)
        for i in range(req.n):
            if not context.is_active():
                self.s.cancelled.append(req.text)
                return
            yield Msg(text="%s-%d" % (req.text, i), n=i, server=self.s.name)
            if req.sleep:
                time.sleep(req.sleep)

    def ClientStream(self, it, context):
        md = self._note(context)
        self._echo_metadata(context, md)
        texts = [m.text for m in it]
        return Msg(text="+".join(texts), n=len(texts), server=self.s.name)

    def Bidi(self, it, context):
        md = self._note(context)
        self._echo_metadata(context, md)
        for m in it:
            yield Msg(text=m.text.upper(), n=m.n, server=self.s.name)


class HealthServicer(health_grpc.HealthServicer):
    def __init__(self, server):
        self.s = server

    def Check(self, req, context):
        self.s.health_checks += 1
        return health_pb.HealthCheckResponse(status=self.s.serving)


class Server:
    """A gRPC server on host:port (port 0: any) speaking h2c, or h2 over TLS with
    tls=(cert, key)."""

    def __init__(self, name, host="127.0.0.1", port=0, tls=None, workers=64):
        self.name, self.host, self.tls, self.workers = name, host, tls, workers
        self.calls = 0
        self.metadata = []
        self.ended = []
        self.cancelled = []
        self.health_checks = 0
        self.serving = health_pb.HealthCheckResponse.SERVING
        self.gate = None
        self.port = port
        self.server = None
        self.start()

    def start(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers),
                                  options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_EchoServicer_to_server(EchoServicer(self), self.server)
        health_grpc.add_HealthServicer_to_server(HealthServicer(self), self.server)
        where = "%s:%d" % (self.host, self.port)
        if self.tls:
            with open(self.tls[0], "rb") as f:
                cert = f.read()
            with open(self.tls[1], "rb") as f:
                key = f.read()
            creds = grpc.ssl_server_credentials([(key, cert)])
            self.port = self.server.add_secure_port(where, creds)
        else:
            self.port = self.server.add_insecure_port(where)
        assert self.port > 0
        self.server.start()

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def stop(self, grace=None):
        if self.server is not None:
            self.server.stop(grace).wait()
            self.server = None


def channel(port, host="127.0.0.1", **options):
    opts = [("grpc.enable_retries", 0)] + list(options.items())
    return grpc.insecure_channel("%s:%d" % (host, port), options=opts)


def wait_until(pred, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


__all__ = ["Server", "Msg", "channel", "pb_grpc", "health_pb", "health_grpc", "wait_until",
           "threading"]


class MuteH2Server:
    """An HTTP/2 server (h2c, Python's h2) that takes requests and never answers (or answers
    with <respond>(conn, stream_id)), and records the streams its peer reset: a target that
    ignores grpc-timeout, or one that misbehaves."""

    def __init__(self, host="127.0.0.1", respond=None):
        self.respond = respond
        import socket
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.addr = "%s:%d" % self.sock.getsockname()
        self.requests, self.resets = [], []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        import h2.config
        import h2.connection
        import h2.events
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        while not self.stopping:
            try:
                data = c.recv(65536)
            except OSError:
                break
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    if self.respond is not None:
                        self.respond(conn, ev.stream_id)
                    self.requests.append(dict((k.decode() if isinstance(k, bytes) else k,
                                               v.decode() if isinstance(v, bytes) else v)
                                              for k, v in ev.headers))
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets.append(int(ev.error_code))
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            out = conn.data_to_send()
            if out:
                c.sendall(out)
        c.close()

    def stop(self):
        self.stopping = True
        self.sock.close()
