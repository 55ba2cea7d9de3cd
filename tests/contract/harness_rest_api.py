"""Contract harness for the REST API connector: a real local HTTP server with Link-header paging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.rest_api_server import RecordServer

TOKEN = "contract-token-0123"
_SERVERS: dict[str, RecordServer] = {}


def record(rid: str, updated: str | None, caption: str | None, image: str | None = "chelsea.png",
           patient: str = "p1") -> dict[str, Any]:
    """One API record as the test server serves it."""
    out: dict[str, Any] = {"id": rid, "caption": caption, "meta": {"patient": patient}}
    if updated is not None:
        out["updated"] = updated
    if image is not None:
        out["image_url"] = f"/images/{image}"
    return out


class RestApiHarness:
    name = "rest_api"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        photos: Path = request.getfixturevalue("photo_dir")
        server = RecordServer(photos, token=TOKEN).start()
        _SERVERS[server.url] = server

        def stop() -> None:
            _SERVERS.pop(server.url, None)
            server.stop()

        request.addfinalizer(stop)
        server.records = [
            record("r-1", "2026-01-01T09:00:00Z", "A tabby cat.", "chelsea.png"),
            record("r-2", "2026-01-01T10:00:00Z", "An astronaut.", "astronaut.png", "p2"),
            record("r-3", "2026-01-01T10:00:00Z", "Latte art.", "coffee.png"),
        ]
        return {"source": "contract_rest", "base_url": server.url, "path": "/link/records", "pagination": "link",
                "page_size": 2, "id_field": "id", "time_field": "updated", "text_field": "caption",
                "image_field": "image_url", "key_fields": {"patient_id": "meta.patient"},
                "incremental_param": "updated_since", "auth": "bearer", "token": SecretStr(TOKEN),
                "backoff_s": 0.0}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        server = _SERVERS[options["base_url"]]
        server.records += [
            record("r-0", "2026-01-01T10:00:00Z", "Same time as the newest committed record.", "coffee.png"),  # tie
            record("r-4", "2026-01-02T00:00:00Z", "The cat again.", "chelsea.png"),
        ]
        return {"r-0", "r-4"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        server = _SERVERS[options["base_url"]]
        server.records += [
            record("no-time", None, "A record without a time."),
            record("bad-time", "last tuesday", "A record with a nonsense time."),
            record("no-text", "2026-01-03T00:00:00Z", ""),
            record("gone-image", "2026-01-03T00:00:00Z", "Its image was deleted.", "deleted.png"),
        ]
        return {"no-time", "bad-time", "no-text", "gone-image"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "token": SecretStr("wrong-token")},
            {**options, "path": "/no/such/records"},
            {**options, "records_path": "data.items"},
            {**options, "token": None},
            {**options, "base_url": "ftp://example.invalid"},
            {**options, "timezone": "Not/AZone"},
        ]


HARNESS = RestApiHarness()
