"""A tiny threaded HTTP server on 127.0.0.1 for the http_request and webhook step tests: fixed paths
(/json, /text, /echo, /status/<code>, /flaky, /big, /slow, /hook) and a record of every request."""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from runs.engine import signing


class Server:
    """A tiny threaded HTTP server recording every request it receives."""

    def __init__(self):
        self.requests: list[dict] = []
        self.counters: dict[str, int] = {}
        self.lock = threading.Lock()
        self.hook_secret = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _reply(self, status=200, body=b"", content_type="text/plain"):
                # A client that gave up (the timeout tests) has closed the socket already.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Served-By", "test")
                    self.end_headers()
                    self.wfile.write(body)

            def _json(self, data, status=200):
                self._reply(status, json.dumps(data).encode(), "application/json")

            def _handle(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                with server.lock:
                    server.requests.append(record)
                    count = server.counters[url.path] = server.counters.get(url.path, 0) + 1
                if url.path == "/json":
                    self._json({"ok": True, "items": [1, 2]})
                elif url.path == "/text":
                    self._reply(body=b"hello there")
                elif url.path == "/echo":
                    echo = {**record, "body": body.decode()}
                    self._json(echo)
                elif url.path.startswith("/status/"):
                    self._reply(int(url.path.rsplit("/", 1)[1]), b"status body")
                elif url.path == "/flaky":
                    if count <= int(query.get("fail", 2)):
                        self._reply(503, b"try again")
                    else:
                        self._json({"count": count})
                elif url.path == "/big":
                    self._reply(body=b"x" * (300 * 1024))
                elif url.path == "/slow":
                    time.sleep(2)
                    self._reply(body=b"late")
                elif url.path == "/hook":
                    valid = signing.verify(server.hook_secret, body, self.headers.get("X-Baton-Signature"))
                    self._reply(204 if valid else 401)
                else:
                    self._reply(404, b"no such path")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def count(self, path: str) -> int:
        return self.counters.get(path, 0)


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    server = Server()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
