"""Real HTTP servers on 127.0.0.1 for the tests of the HTTP judge: a scripted OpenAI-compatible
server (one class, used by tests/annotate/test_http_engine.py and tests/test_failures.py), a free
port and a port nobody listens on."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from localhost import free_port


def closed_port_url() -> str:
    """A base URL whose port is bound by nobody: a connection there is refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


class ScriptedServer:
    """Answers POSTs from a script: a list of (status, answer, headers), the last one repeated.

    ``answer`` is a JSON body, or a callable that makes it from the request (a dict with its
    ``path``, JSON ``body``, ``headers`` and ``authorization``). ``on_request(handler)`` runs
    before each answer (e.g. to kill the client that sent it). Every request is kept in
    ``requests``, in the order they came.
    """

    def __init__(self, script, on_request=None):
        self.script = list(script)
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "body": json.loads(raw) if raw else None,
                           "headers": self.headers,
                           "authorization": self.headers.get("Authorization")}
                owner.requests.append(request)
                if on_request is not None:
                    on_request(self)
                status, answer, headers = (owner.script.pop(0) if len(owner.script) > 1
                                           else owner.script[0])
                if callable(answer):
                    answer = answer(request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def echoing_headers(request: dict) -> dict:
    """An error body that repeats the request's headers, the key among them (as careless servers
    do): what a test of secret scrubbing answers with."""
    headers = request["headers"]
    return {"error": {"message": "rejected request with headers " + json.dumps(dict(headers))
                      + " " + str(headers)}}


def echoing(status: int, on_request=None) -> ScriptedServer:
    """A server answering every POST with ``status`` and a body echoing the request's headers."""
    return ScriptedServer([(status, echoing_headers, None)], on_request=on_request)
