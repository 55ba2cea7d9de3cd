"""A real HTTP server for the REST API connector's tests: JSON records in four pagination styles.

Endpoints (all on 127.0.0.1, a free port, in a thread):

- ``/page/records?page=&per_page=``        -> ``{"data": [...]}``
- ``/offset/records?offset=&limit=``       -> ``{"data": [...]}``
- ``/cursor/records?cursor=&per_page=``    -> ``{"data": [...], "next_cursor": "..."}``
- ``/link/records?per_page=&after=``       -> ``[...]`` with ``Link: <...>; rel="next"``
- ``/images/<name>``                       -> the file from ``image_dir`` (404 if missing)

Every records endpoint takes ``updated_since`` (ISO 8601; records at or after it, plus records whose
time is unreadable).  ``token``/``api_key`` make it demand auth; ``faults`` makes the next requests
answer a given status (with ``Retry-After: 0`` on 429).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse


def _time_key(record: dict[str, Any]) -> str:
    try:
        return datetime.fromisoformat(str(record.get("updated"))).isoformat()
    except ValueError:
        return ""


class RecordServer:
    """Serves ``records`` (a list the test may change) and images; ``requests`` logs each path+query."""

    def __init__(self, image_dir: Path, *, token: str | None = None, api_key: str | None = None) -> None:
        self.image_dir = image_dir
        self.token, self.api_key = token, api_key
        self.records: list[Any] = []
        self.faults: list[int] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RecordServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest-api-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling ------------------------------------------------------------------------
    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler: BaseHTTPRequestHandler, body: Any, headers: dict[str, str] | None = None,
              status: int = 200) -> None:
        self._send(handler, status, json.dumps(body).encode(), "application/json", headers)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append(handler.path)
            fault = self.faults.pop(0) if self.faults else None
            records = list(self.records)
        if fault is not None:
            self._json(handler, {"error": "injected"}, {"Retry-After": "0"} if fault == 429 else None, status=fault)
            return
        if parsed.path.startswith("/images/"):
            path = self.image_dir / parsed.path.removeprefix("/images/")
            if not path.is_file():
                self._json(handler, {"error": "no such image"}, status=404)
                return
            self._send(handler, 200, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png")
            return
        if self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            self._json(handler, {"error": "unauthorized"}, status=401)
            return
        if self.api_key and handler.headers.get("X-API-Key") != self.api_key:
            self._json(handler, {"error": "forbidden"}, status=403)
            return
        style = parsed.path.removesuffix("/records").strip("/")
        if not parsed.path.endswith("/records") or style not in ("page", "offset", "cursor", "link", "all"):
            self._json(handler, {"error": "not found"}, status=404)
            return
        if "updated_since" in query:
            since = datetime.fromisoformat(query["updated_since"]).isoformat()
            records = [r for r in records if not isinstance(r, dict) or not _time_key(r) or _time_key(r) >= since]
        records.sort(key=lambda r: (_time_key(r), str(r.get("id"))) if isinstance(r, dict) else ("", ""))
        size = int(query.get("per_page", query.get("limit", "100")))
        if style == "all":
            self._json(handler, {"data": records})
        elif style == "page":
            start = (int(query.get("page", "1")) - 1) * size
            self._json(handler, {"data": records[start:start + size]})
        elif style == "offset":
            start = int(query.get("offset", "0"))
            self._json(handler, {"data": records[start:start + size]})
        elif style == "cursor":
            start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query else 0
            more = start + size < len(records)
            token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
            self._json(handler, {"data": records[start:start + size], "next_cursor": token})
        else:
            start = int(query.get("after", "0"))
            headers = {}
            if start + size < len(records):
                nxt = {**query, "after": str(start + size), "per_page": str(size)}
                headers["Link"] = f'</link/records?{urlencode(nxt)}>; rel="next", </link/records>; rel="first"'
            self._json(handler, records[start:start + size], headers)
