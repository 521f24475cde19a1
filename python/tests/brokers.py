"""
Brokers the tests start themselves, on free ports, stopped at the end:
tansu (a Kafka-compatible broker, installed by scripts/setup.sh) with a
small schema registry of the test's (the Confluent endpoints the Kafka
backend calls), and pulsar-lite (a Pulsar-protocol broker, in the venv).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name, log, patience=30):
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited ({proc.returncode}):\n{Path(log).read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{name} did not listen on {port} within {patience} s:\n{Path(log).read_text()[-3000:]}")


class Registry:
    """A schema registry double: subjects, versions and ids, in memory."""

    def __init__(self):
        self.schemas = []  # id - 1 -> schema text
        self.subjects = {}  # subject -> [id, ...]
        self.lock = threading.Lock()  # the server answers each request on its own thread
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def do_POST(self):  # noqa: N802
                with registry.lock:
                    return self.post()

            def do_GET(self):  # noqa: N802
                with registry.lock:
                    return self.get()

            def post(self):
                m = re.fullmatch(r"/subjects/([^/]+)(/versions)?", self.path.split("?")[0])
                if not m:
                    return self.reply(404, {"error_code": 404, "message": "not found"})
                schema = self.body().get("schema", "")
                if schema in registry.schemas:
                    sid = registry.schemas.index(schema) + 1
                elif m.group(2):
                    registry.schemas.append(schema)
                    sid = len(registry.schemas)
                else:
                    return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
                ids = registry.subjects.setdefault(m.group(1), [])
                if m.group(2) and sid not in ids:
                    ids.append(sid)
                if m.group(2):
                    return self.reply(200, {"id": sid})
                return self.reply(200, {"subject": m.group(1), "id": sid, "version": ids.index(sid) + 1,
                                        "schema": schema})

            def get(self):
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/schemas/ids/(\d+)", path)
                if m and 0 < int(m.group(1)) <= len(registry.schemas):
                    return self.reply(200, {"schema": registry.schemas[int(m.group(1)) - 1]})
                if path == "/subjects":
                    return self.reply(200, list(registry.subjects))
                m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
                if m and m.group(1) in registry.subjects:
                    return self.reply(200, list(range(1, len(registry.subjects[m.group(1)]) + 1)))
                return self.reply(404, {"error_code": 40401, "message": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class Tansu:
    """tansu with in-memory storage."""

    def __init__(self):
        binary = os.environ.get("TANSU_BIN") or shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu")
        if not os.path.exists(binary):
            raise AssertionError("the tansu broker is needed: run scripts/setup.sh (it builds it once)")
        self.dir = tempfile.mkdtemp(prefix="tansu-")
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = os.path.join(self.dir, "tansu.log")
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"], cwd=self.dir, stdout=log, stderr=log,
                env={**os.environ, "RUST_LOG": "warn"})
        wait_port(self.port, self.proc, "tansu", self.log)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def create_topics(self, *names, partitions=1):
        from confluent_kafka.admin import AdminClient, NewTopic  # pylint: disable=import-outside-toplevel
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for f in futures.values():
            f.result(30)

    def start_group_at_zero(self, topic, group, partitions=1):
        """Commit offset 0 on every partition for `group`. The Kafka peer's consumer sets no
        auto.offset.reset (librdkafka's default is the end): so the group starts at the topic's first
        offset, as a deployment whose consumer ran before the events were sent would."""
        from confluent_kafka import Consumer, TopicPartition  # pylint: disable=import-outside-toplevel
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition(topic, p, 0) for p in range(partitions)], asynchronous=False)
        finally:
            c.close()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pulsar_lite_binary():
    import pulsar_lite  # pylint: disable=import-outside-toplevel
    binary = os.path.join(os.path.dirname(pulsar_lite.__file__), "bin", "pulsar-lite")
    if not os.path.exists(binary):
        raise AssertionError(f"no pulsar-lite binary at {binary}: run scripts/python-env.sh")
    return binary


class PulsarLite:
    """pulsar-lite (a Pulsar-protocol broker from PyPI), reached through a
    `ChecksumProxy`: the Pulsar backend's client needs what pulsar-lite
    leaves out of its MESSAGE frames."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pulsar-lite-")
        config = os.path.join(self.dir, "cfg.toml")
        Path(config).write_text("[metrics]\nenabled = false\n", encoding="utf-8")
        self.port = free_port()
        self.log = os.path.join(self.dir, "broker.log")
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [_pulsar_lite_binary(), "--config", config, "--addr", f"127.0.0.1:{self.port}",
                 "--db-path", os.path.join(self.dir, "db"), "--log-level", "warn"],
                stdout=log, stderr=log)
        wait_port(self.port, self.proc, "pulsar-lite", self.log)
        self.proxy = ChecksumProxy(("127.0.0.1", self.port))
        self.url = self.proxy.url

    def stop(self):
        self.proxy.stop()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the checksum-restoring proxy ---------------------------------------------------------------
#
# pulsar-lite 0.2.0 sends MESSAGE frames without the magic number 0x0e01 and the CRC32-C checksum
# that the Pulsar binary protocol puts before the message metadata; the Python client tolerates
# that, the Rust client (pulsar-rs) does not. The proxy restores them, and rewrites the broker URL of
# LOOKUP responses to its own so that every connection of the client goes through it. The same
# fixture exists in Rust for the backend's own tests (crates/event-bus-pulsar/tests/support/proxy.rs).
# Frames: [total u32][command size u32][BaseCommand][magic u16][crc u32][metadata size u32]... (BE).

_MESSAGE, _LOOKUP_RESPONSE = 9, 24  # BaseCommand.Type values; also the field numbers of their bodies
_MAGIC = b"\x0e\x01"


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _encode_varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def proto_fields(data):
    """The fields of a protobuf message as (number, wire type, raw value bytes) in order."""
    i, fields = 0, []
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        start = i
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, start = _varint(data, i)
            i = start + size
        else:
            raise ValueError(f"wire type {wire}")
        fields.append((number, wire, data[start:i]))
    return fields


def proto_encode(fields):
    out = bytearray()
    for number, wire, raw in fields:
        out += _encode_varint(number << 3 | wire)
        if wire == 2:
            out += _encode_varint(len(raw))
        out += raw
    return bytes(out)


def fix_broker_frame(body, own_url):
    """A broker frame (without its size prefix) as the client expects it."""
    command_size = int.from_bytes(body[:4], "big")
    command, rest = body[4:4 + command_size], body[4 + command_size:]
    fields = proto_fields(command)
    kind = next((_varint(raw, 0)[0] for number, wire, raw in fields if number == 1 and wire == 0), None)
    if kind == _MESSAGE and rest and not rest.startswith(_MAGIC):
        return body[:4 + command_size] + _MAGIC + crc32c(rest).to_bytes(4, "big") + rest
    if kind == _LOOKUP_RESPONSE:
        url = own_url.encode()
        new = []
        for number, wire, raw in fields:
            if number == _LOOKUP_RESPONSE and wire == 2:
                raw = proto_encode([(n, w, url if n in (1, 2) and w == 2 else r) for n, w, r in proto_fields(raw)])
            new.append((number, wire, raw))
        command = proto_encode(new)
        return len(command).to_bytes(4, "big") + command + rest
    return body


class ChecksumProxy:
    """A TCP proxy in front of pulsar-lite; see above."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"pulsar://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, broker):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets.append(s)
            threading.Thread(target=self._pump, args=(client, broker, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, self.url), daemon=True).start()

    @staticmethod
    def _read(sock, n):
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return bytes(data)

    def _pump(self, source, sink, own_url):
        try:
            while True:
                body = self._read(source, int.from_bytes(self._read(source, 4), "big"))
                if own_url is not None:
                    body = fix_broker_frame(body, own_url)
                sink.sendall(len(body).to_bytes(4, "big") + body)
        except (OSError, EOFError, ValueError, IndexError):
            for s in (source, sink):
                _close(s)

    def stop(self):
        self.stopped = True
        _close(self.listener)
        for s in self.sockets:
            _close(s)


def _close(sock):
    """Close a socket another thread may be blocked on (shutdown wakes it)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
