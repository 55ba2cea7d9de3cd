"""The REST API connector: a real local HTTP server for paging, auth and images; httpx.MockTransport only
for the error sequences a real server cannot be made to produce on cue (throttling, outages, loops)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.rest_api import RestApiConfig, RestApiConnector
from connectors.sdk import State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from tests.contract.harness_rest_api import record
from tests.rest_api_server import RecordServer

FIELDS = {"id_field": "id", "time_field": "updated", "text_field": "caption", "image_field": "image_url",
          "key_fields": {"patient_id": "meta.patient"}}


@pytest.fixture
def server(photo_dir: Path) -> Iterator[RecordServer]:
    srv = RecordServer(photo_dir, api_key="k-123").start()
    srv.records = [record(f"r-{n}", f"2026-01-0{1 + n % 3}T00:00:00Z", f"caption {n}",
                          ("chelsea.png", "astronaut.png", "coffee.png")[n % 3]) for n in range(7)]
    yield srv
    srv.stop()


def _live(server: RecordServer, **options: Any) -> RestApiConnector:
    connector = load_connector("rest_api", {"base_url": server.url, "auth": "api_key",
                                            "api_key": SecretStr("k-123"), "backoff_s": 0.0, **FIELDS, **options})
    assert isinstance(connector, RestApiConnector)
    return connector


def test_module_import_stays_light() -> None:
    code = "import sys, connectors.rest_api; assert 'httpx' not in sys.modules, 'httpx imported at module level'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.integration
@pytest.mark.parametrize("options", [
    {"path": "/page/records", "pagination": "page", "records_path": "data", "page_size": 3},
    {"path": "/offset/records", "pagination": "offset", "records_path": "data", "page_size": 2},
    {"path": "/cursor/records", "pagination": "cursor", "records_path": "data", "page_size": 3},
    {"path": "/link/records", "pagination": "link", "page_size": 2},
    {"path": "/all/records", "records_path": "data"},
], ids=["page", "offset", "cursor", "link", "none"])
def test_every_pagination_style_reads_every_record_with_its_image(server: RecordServer, photo_dir: Path,
                                                                 options: dict[str, Any]) -> None:
    with _live(server, **options) as connector:
        connector.check()
        items = connector.list_items(State(), Window())
        assert sorted(i.source_id for i in items) == [f"r-{n}" for n in range(7)]
        [cat] = connector.fetch(next(i for i in items if i.source_id == "r-3"))
        assert cat.object("image").data == (photo_dir / "chelsea.png").read_bytes()
        assert cat.object("image").media_type == "image/png"
        assert cat.text == "caption 3" and cat.keys == {"patient_id": "p1"}
        assert cat.event_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert len(server.requests) > 2 or options.get("pagination") is None


@pytest.mark.integration
def test_incremental_param_sends_the_state_and_ties_are_settled_by_id(server: RecordServer) -> None:
    with _live(server, path="/page/records", pagination="page", records_path="data",
               incremental_param="updated_since") as connector:
        state = State(cursor="2026-01-03T00:00:00.000000Z", seen_at_cursor=frozenset({"r-2"}))
        server.requests.clear()
        assert [i.source_id for i in connector.list_items(state, Window())] == ["r-5"]
        assert all("updated_since=2026-01-03T00%3A00%3A00.000000Z" in r for r in server.requests)


@pytest.mark.integration
def test_auth_failures_and_a_wrong_path_are_config_errors_naming_the_setting(server: RecordServer) -> None:
    with pytest.raises(ConfigError) as info:
        _live(server, path="/page/records", records_path="data", api_key=SecretStr("wrong")).check()
    assert info.value.setting == "api_key" and "403" in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        _live(server, path="/page/records", records_path="data", auth="none").check()
    assert info.value.setting == "auth"
    with pytest.raises(ConfigError) as info:
        _live(server, path="/v2/records", records_path="data").check()
    assert info.value.setting == "path" and "404" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _live(server, path="/page/records", records_path="items").check()
    assert info.value.setting == "records_path"


@pytest.mark.integration
def test_malformed_records_are_bad_records_one_by_one(server: RecordServer) -> None:
    server.records = [
        record("ok", "2026-01-01T00:00:00Z", "fine"),
        record("gone", "2026-01-01T00:00:00Z", "image deleted", "deleted.png"),
        {"updated": "2026-01-01T00:00:00Z", "caption": "no id"},
        record("notime", None, "no time"),
        record("naive", "2026-01-01T00:00:00", "naive time in the configured zone", None),
        "not an object",
    ]
    with _live(server, path="/all/records", records_path="data", timezone="Asia/Tokyo") as connector:
        good, bad = {}, {}
        for item in connector.list_items(State(), Window()):
            try:
                [good[item.source_id]] = connector.fetch(item)
            except BadRecordError as exc:
                bad[item.source_id] = exc.reason
        assert set(good) == {"ok", "naive"}
        assert good["naive"].event_time == datetime(2025, 12, 31, 15, tzinfo=UTC)
        assert "404" in bad["gone"] and "notime" in bad and "updated is missing" in bad["notime"]
        assert sum(k.startswith("record:") for k in bad) == 2  # no id / not an object: named by content hash


@pytest.mark.integration
def test_real_server_outages_are_retried_then_retriable(server: RecordServer) -> None:
    with _live(server, path="/all/records", records_path="data", max_retries=2) as connector:
        server.faults = [503, 429]
        assert len(connector.list_items(State(), Window())) == 7
        server.faults = [502, 502, 502]
        with pytest.raises(RetriableError, match="3 tries"):
            connector.list_items(State(), Window())


# -- error paths through httpx.MockTransport (no server) --------------------------------------------------
def _mocked(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> tuple[RestApiConnector,
                                                                                           list[float]]:
    slept: list[float] = []
    config = RestApiConfig.model_validate({"base_url": "https://api.example.test", "path": "/v1/items",
                                           **FIELDS, **options})
    return RestApiConnector(config, transport=httpx.MockTransport(handler), sleep=slept.append), slept


def test_429_honours_retry_after_and_5xx_backs_off_exponentially() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(500), httpx.Response(503),
                    httpx.Response(200, json=[record("a", "2026-01-01T00:00:00Z", "x", None)])])
    connector, slept = _mocked(lambda request: next(answers), backoff_s=1.0, max_retries=3)
    assert [i.source_id for i in connector.list_items()] == ["a"]
    assert slept == [7.0, 2.0, 4.0]


def test_retry_after_as_http_date_and_the_backoff_cap() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    connector, slept = _mocked(lambda request: httpx.Response(429, headers={"Retry-After": when}),
                               max_retries=2, max_backoff_s=60.0)
    with pytest.raises(RetriableError, match="HTTP 429"):
        connector.list_items()
    assert slept == [60.0, 60.0]


def test_network_faults_are_retried_then_retriable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    connector, slept = _mocked(refuse, max_retries=2, backoff_s=0.5)
    with pytest.raises(RetriableError, match="ConnectError"):
        connector.check()
    assert slept == [0.5, 1.0]


def test_bearer_token_goes_to_the_api_host_only() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("Authorization")
        if request.url.host == "cdn.example.test":
            return httpx.Response(200, content=b"\x89PNG\r\n\x1a\nxx", headers={"Content-Type": "image/png"})
        if request.url.path == "/v1/items":
            return httpx.Response(200, json=[{**record("a", "2026-01-01T00:00:00Z", "x", None),
                                              "image_url": "https://cdn.example.test/a.png"}])
        return httpx.Response(401)

    connector, _ = _mocked(handler, auth="bearer", token=SecretStr("s3cret"))
    [item] = connector.list_items()
    [rec] = connector.fetch(item)
    assert seen == {"api.example.test": "Bearer s3cret", "cdn.example.test": None}
    assert rec.object("image").media_type == "image/png"  # type: ignore[union-attr]


def test_non_json_and_non_advancing_pagination_are_config_errors() -> None:
    connector, _ = _mocked(lambda r: httpx.Response(200, text="<html>login</html>",
                                                    headers={"Content-Type": "text/html"}))
    with pytest.raises(ConfigError, match="did not answer JSON"):
        connector.check()
    loop = {"data": [record("a", "2026-01-01T00:00:00Z", "x", None)], "next_cursor": "same"}
    connector, _ = _mocked(lambda r: httpx.Response(200, json=loop), pagination="cursor", records_path="data")
    with pytest.raises(ConfigError, match="does not advance"):
        connector.list_items()


def test_an_image_that_is_not_an_image_is_a_bad_record() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/items":
            return httpx.Response(200, json=[record("a", "2026-01-01T00:00:00Z", "x", "a.png")])
        return httpx.Response(200, text="<html>moved</html>", headers={"Content-Type": "text/html"})

    connector, _ = _mocked(handler)
    [item] = connector.list_items()
    with pytest.raises(BadRecordError, match="not an image"):
        connector.fetch(item)


def test_config_requires_the_secret_its_auth_needs() -> None:
    with pytest.raises(ConfigError, match="needs token"):
        load_connector("rest_api", {"base_url": "https://x.test", "auth": "bearer", **FIELDS})
    with pytest.raises(ConfigError, match="base_url"):
        load_connector("rest_api", {"base_url": "x.test", **FIELDS})
