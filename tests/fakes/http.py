"""The HTTP side every JSON fake shares: a threaded server on 127.0.0.1 that hands each
request to `handle(method, path, body_bytes) -> (status, json_payload or bytes)`, or, when
the handler asks for them (`headers=True`), `handle(method, path, body_bytes, headers)`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handle = Callable[..., tuple[int, object]]


def serve_json(handle: Handle, content_type: str = "application/json",
               headers: bool = False) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; the caller shuts the returned server down."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            args = (self.headers,) if headers else ()
            status, payload = handle(self.command, self.path, raw, *args)
            # bytes are sent as they are, as text (a pod's log), anything else as JSON.
            text = isinstance(payload, bytes)
            data = payload if text else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8" if text
                             else content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"
