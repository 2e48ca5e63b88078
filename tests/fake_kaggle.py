"""A small stand-in for Kaggle's API on the loopback interface, for the tests.

The real ``kaggle`` client, with ``KAGGLE_API_ENVIRONMENT=LOCALHOST``, sends its
JSON-over-POST calls to ``http://localhost/api/v1/<Service>/<Operation>``; with
``HTTP_PROXY`` pointing here, this server receives them (in proxy form) without any
patching of the client. It checks the basic-auth credentials, and serves the
competition zip the way Kaggle does: ``DownloadDataFiles`` answers with a redirect to
the archive.
"""
from __future__ import annotations

import base64
import json
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SERVICE = "/api/v1/competitions.CompetitionApiService/"


class FakeKaggle:
    def __init__(self, username, key, competition, archive_bytes):
        self.username, self.key = username, key
        self.competition = competition
        self.archive = archive_bytes
        self.calls = []  # (operation, request body)
        self.fail_with = None  # force an HTTP status on every API call
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self):
                header = self.headers.get("Authorization", "")
                expected = base64.b64encode(f"{server.username}:{server.key}".encode()).decode()
                return header == f"Basic {expected}"

            def do_POST(self):
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                operation = path[len(SERVICE):] if path.startswith(SERVICE) else path
                server.calls.append((operation, body))
                if server.fail_with:
                    return self._json(server.fail_with, {"code": server.fail_with,
                                                         "message": f"forced {server.fail_with}"})
                if not self._authorised():
                    return self._json(401, {"code": 401, "message": "Unauthenticated"})
                if body.get("competitionName") != server.competition:
                    return self._json(404, {"code": 404, "message": "Competition not found"})
                if operation == "DownloadDataFiles":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost/files/{server.competition}.zip")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                return self._json(404, {"code": 404, "message": f"no operation {operation}"})

            def do_GET(self):
                path = urlsplit(self.path).path
                if path != f"/files/{server.competition}.zip":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(server.archive)))
                self.send_header("Last-Modified", formatdate(usegmt=True))
                self.end_headers()
                self.wfile.write(server.archive)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
