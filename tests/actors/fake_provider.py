"""A stand-in AI provider as a real HTTP server on 127.0.0.1 (the outside world's one fake)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from typing import Any


def ask(url: str, question: str) -> dict[str, Any]:
    """A client call, as a provider SDK would make it (picklable: Ray ships it to actors)."""
    req = urllib.request.Request(url, data=json.dumps({"q": question}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


class FakeProvider:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.calls += 1
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/diagnose"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ask(self, question: str) -> dict[str, Any]:
        return ask(self.url, question)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
