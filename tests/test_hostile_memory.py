"""Hostile load against a real web process: an anonymous, oversized dashboard POST is refused
without the process's memory growing by more than a few MB.

The example platform runs in its own process behind the standard library's WSGI server (which,
unlike Werkzeug's development server, never drains an unread body itself, so what the process
holds is what the app made it hold). The test samples the process's resident memory while it
streams a 500 MB body at the dashboard's upload and settings forms.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/settings/integrations/csv-import"
MB = 1024 * 1024
SERVER = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server
from example_app import create_app

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, create_app({"CSVDIRECTORY_JOBS_MODE": "sync"}),
                     handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(pid, port) of the example platform serving in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSVDIRECTORY_")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.sqlite3'}",
        SECRET_KEY="test-secret",
        PYTHONPATH=str(ROOT),
    )
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def request(port: int, raw: bytes, body_bytes: int = 0) -> bytes:
    """Send ``raw`` (request line and headers), then up to ``body_bytes`` of body in 1 MB
    chunks while the server keeps reading; return the response's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        chunk = b"x" * MB
        try:
            for _ in range(body_bytes // MB):
                conn.sendall(chunk)
        except OSError:  # the server answered and closed: it will not read the rest
            pass
        try:
            return conn.recv(4096)
        except OSError:
            return b""


def attack(port: int, path: str, size: int) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {size}\r\n"
        "Connection: close\r\n\r\n--xyz\r\nContent-Disposition: form-data; name=\"employees\"; "
        "filename=\"Employees.csv\"\r\n\r\n"
    ).encode()
    return request(port, head, size)


def test_anonymous_oversized_dashboard_post_does_not_grow_the_web_process(
    web_process: tuple[int, int],
) -> None:
    pid, port = web_process
    for _ in range(3):  # warm up: imports, templates, the first requests' caches
        request(port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        request(port, f"GET {PREFIX}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    baseline = rss_kb(pid)
    peak = baseline
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_kb(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answers = [
            attack(port, f"{PREFIX}/upload", 500 * MB),
            attack(port, f"{PREFIX}/", 500 * MB),
            attack(port, f"{PREFIX}/upload", 500 * MB),
            attack(port, f"{PREFIX}/runs/x/approve", 500 * MB),
        ]
    finally:
        sampling = False
        sampler.join()
    for answer in answers:  # each refused: sent to the login page
        assert answer.startswith(b"HTTP/1.") and b" 302 " in answer.split(b"\r\n")[0], answer
        assert b"/login" in answer
    growth_mb = (peak - baseline) / 1024
    print(f"baseline {baseline / 1024:.1f} MB, peak {peak / 1024:.1f} MB, growth {growth_mb:.1f}")
    assert growth_mb < 5, f"the web process grew by {growth_mb:.1f} MB"
