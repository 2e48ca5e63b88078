"""A small stand-in for Kaggle's API on the loopback interface, for the tests.

The real ``kaggle`` client, with ``KAGGLE_API_ENVIRONMENT=LOCALHOST``, sends its
JSON-over-POST calls to ``http://localhost/api/v1/<Service>/<Operation>``; with
``HTTP_PROXY`` pointing here, this server receives them (in proxy form) without any
patching of the client. It checks the basic-auth credentials and implements what the
package uses:

- ``DownloadDataFiles``: a redirect to the competition zip, as Kaggle does;
- ``StartSubmissionUpload`` → a resumable-upload URL, which takes the file by ``PUT``;
- ``CreateSubmission``: counts against a daily limit, and is scored against the
  hidden labels after ``score_after`` polls (public/private: alternate sorted ids);
- ``ListSubmissions`` (the polling) and ``GetSubmissionLimits``;
- for kernels: ``StartBlobUpload`` (+ ``PUT``), ``GetDatasetStatus``, ``CreateDataset``,
  ``CreateDatasetVersion`` (private data sets: the package wheel, the weights) and
  ``SaveKernel`` (``kaggle kernels push``).
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import threading
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

API = "/api/v1/"
COMPETITIONS = "competitions.CompetitionApiService"


def score(csv_bytes, hidden):
    """``(public AUC, private AUC)`` of a submission CSV, or raise ValueError."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    frame = pd.read_csv(io.BytesIO(csv_bytes), dtype={"id": str})
    if list(frame.columns) != ["id", "label"] or set(frame["id"]) != set(hidden):
        raise ValueError("Submission must have columns id,label and every test id once")
    predictions = dict(zip(frame["id"], frame["label"]))
    ids = sorted(hidden)
    halves = ids[0::2], ids[1::2]  # public, private
    return tuple(float(roc_auc_score([hidden[i] for i in half], [predictions[i] for i in half]))
                 for half in halves)


class FakeKaggle:
    def __init__(self, username, key, competition, archive_bytes=None, hidden_labels=None,
                 daily_limit=5, score_after=1):
        self.username, self.key = username, key
        self.competition = competition
        self.archive = archive_bytes
        self.hidden = dict(hidden_labels or {})  # test id → 0/1
        self.daily_limit = daily_limit
        self.score_after = score_after  # polls before a submission is scored; None: never
        self.calls = []  # (operation, request body)
        self.uploads = {}  # token → bytes received by PUT
        self.submissions = []  # newest last
        self.fail_with = None  # force an HTTP status on every API call
        self.datasets = {}  # "owner/slug" → {"versions": [{token: file bytes}], ...}
        self.kernels = {}  # "owner/slug" → [SaveKernel bodies]
        self._tokens = itertools.count(1)
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

            def _empty(self, status, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _authorised(self):
                header = self.headers.get("Authorization", "")
                expected = base64.b64encode(f"{server.username}:{server.key}".encode()).decode()
                return header == f"Basic {expected}"

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                path = urlsplit(self.path).path
                body = json.loads(self._body() or b"{}")
                service, _, operation = path[len(API):].partition("/")
                server.calls.append((operation, body))
                if server.fail_with:
                    return self._json(server.fail_with, {"code": server.fail_with,
                                                         "message": f"forced {server.fail_with}"})
                if not self._authorised():
                    return self._json(401, {"code": 401, "message": "Unauthenticated"})
                if service == COMPETITIONS and body.get("competitionName") != server.competition:
                    return self._json(404, {"code": 404, "message": "Competition not found"})
                handler = getattr(server, f"op_{operation}", None)
                if handler is None:
                    return self._json(404, {"code": 404, "message": f"no operation {operation}"})
                if operation == "DownloadDataFiles":
                    return self._empty(302, [("Location",
                                              f"http://localhost/files/{server.competition}.zip")])
                status, payload = handler(body)
                return self._json(status, payload)

            def do_PUT(self):  # the resumable upload of a submission file
                token = urlsplit(self.path).path.rpartition("/")[2]
                if token not in server.uploads:
                    return self._empty(404)
                server.uploads[token] = self._body()
                server.calls.append(("PUT upload", {"token": token}))
                return self._json(200, {})

            def do_GET(self):
                path = urlsplit(self.path).path
                if path != f"/files/{server.competition}.zip" or server.archive is None:
                    return self._empty(404)
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(server.archive)))
                self.send_header("Last-Modified", formatdate(usegmt=True))
                self.end_headers()
                self.wfile.write(server.archive)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- operations: (HTTP status, JSON payload) --------------------------------------
    def op_DownloadDataFiles(self, body):  # answered by the handler (a redirect)
        raise AssertionError("unreachable")

    def op_StartSubmissionUpload(self, body):
        token = f"blob-{next(self._tokens)}"
        self.uploads[token] = None
        return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}

    def op_CreateSubmission(self, body):
        token = body.get("blobFileTokens")
        if self.uploads.get(token) is None:
            return 400, {"code": 400, "message": f"unknown or empty upload {token!r}"}
        if self._today() >= self.daily_limit:
            return 400, {"code": 400, "message": "Your team has used its submission allowance "
                                                 f"({self.daily_limit}) for today"}
        ref = 1000 + len(self.submissions)
        self.submissions.append({
            "ref": ref, "date": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"), "description": body.get("submissionDescription", ""),
            "fileName": "submission.csv", "status": "PENDING", "totalBytes": len(self.uploads[token]),
            "_csv": self.uploads[token], "_polls": 0,
        })
        return 200, {"message": "Successfully submitted to Histopathologic Cancer Detection",
                     "ref": ref}

    def op_ListSubmissions(self, body):
        for entry in self.submissions:
            if entry["status"] != "PENDING":
                continue
            entry["_polls"] += 1
            if self.score_after is not None and entry["_polls"] > self.score_after:
                try:
                    public, private = score(entry["_csv"], self.hidden)
                    entry.update(status="COMPLETE", publicScore=f"{public:.5f}",
                                 privateScore=f"{private:.5f}")
                except ValueError as exc:
                    entry.update(status="ERROR", errorDescription=str(exc))
        visible = [{k: v for k, v in e.items() if not k.startswith("_")}
                   for e in reversed(self.submissions)]
        return 200, {"submissions": visible}

    def op_GetSubmissionLimits(self, body):
        today = self._today()
        return 200, {"numToday": today, "numTotal": len(self.submissions),
                     "numAllowedNow": max(self.daily_limit - today, 0), "limitedByTotal": False}

    def op_StartBlobUpload(self, body):
        return self.op_StartSubmissionUpload(body)

    def _files(self, tokens):
        missing = [t for t in tokens if self.uploads.get(t) is None]
        if missing:
            raise KeyError(missing)
        return {t: self.uploads[t] for t in tokens}

    def op_GetDatasetStatus(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        return 200, {"status": "READY"}

    def op_CreateDataset(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        if body.get("ownerSlug") != self.username:
            return 403, {"code": 403, "message": f"cannot create data sets for {body.get('ownerSlug')}"}
        try:
            files = self._files([f["token"] for f in body.get("files", [])])
        except KeyError as exc:
            return 400, {"code": 400, "message": f"unknown uploads {exc}"}
        self.datasets[ref] = {"versions": [files], "private": body.get("isPrivate")}
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def op_CreateDatasetVersion(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.datasets:
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        try:
            files = self._files([f["token"] for f in body.get("body", {}).get("files", [])])
        except KeyError as exc:
            return 400, {"code": 400, "message": f"unknown uploads {exc}"}
        self.datasets[ref]["versions"].append(files)
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"}

    def op_SaveKernel(self, body):
        slug = body.get("slug", "")
        if slug.partition("/")[0] != self.username:
            return 403, {"code": 403, "message": f"cannot push kernels for {slug}"}
        missing = [d for d in body.get("datasetDataSources", []) if d not in self.datasets]
        versions = self.kernels.setdefault(slug, [])
        versions.append(body)
        return 200, {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}",
                     "versionNumber": len(versions),
                     "invalidDatasetSources": missing}

    def _today(self):
        return len(self.submissions)  # every submission of a test is "today"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
