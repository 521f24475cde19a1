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

            def do_GET(self):  # noqa: N802
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

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
