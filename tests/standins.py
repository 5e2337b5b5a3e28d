"""Local stand-ins for real data: images, class-folder trees, ImageNet-Captions JSON, LAION-like
metadata, and a loopback HTTP server (127.0.0.1 only) with failure modes."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def image_bytes(h: int, w: int, seed: int, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_class_tree(root: Path, folders, per_folder: int = 2, seed: int = 0) -> dict:
    """``root/<folder>/img<i>.JPEG`` (every third image a PNG), sizes varying; returns
    {relative path: bytes}."""
    files = {}
    for f_i, folder in enumerate(folders):
        d = root / str(folder)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            png = (f_i + i) % 3 == 0
            data = image_bytes(
                20 + 3 * i, 24 + f_i % 7, seed + 97 * f_i + i, "PNG" if png else "JPEG"
            )
            name = f"img{i}.{'png' if png else 'JPEG'}"
            (d / name).write_bytes(data)
            files[f"{folder}/{name}"] = data
    return files


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextmanager
def silent_port():
    """A loopback port that accepts connections and never answers (requests time out)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]
    delay: float = 0.0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        if self.path.startswith("/html"):
            body = b"<html><body>not an image</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/slow/"):
            time.sleep(self.delay)
            self.path = self.path[len("/slow") :]
        super().do_GET()

    def log_message(self, *args):
        pass


@contextmanager
def loopback_server(directory: Path, delay: float = 0.0):
    """Serve ``directory`` on 127.0.0.1; ``/slow/<file>`` waits ``delay`` s; ``/html`` is a web
    page. Yields (base URL, list of requested paths)."""
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests, "delay": delay})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def write_captions_json(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps(records))
