"""The S3 prefix connector against a real SeaweedFS server: paging, cursors, malformed objects, errors."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.s3_prefix import S3PrefixConfig, S3PrefixConnector
from connectors.sdk import Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from rosetta.devservices.ports import free_port_block
from tests.contract.harness_s3_prefix import put, s3_client

pytestmark = pytest.mark.integration


@pytest.fixture
def options(s3_options: dict[str, Any], bucket_name: str) -> dict[str, Any]:
    opts = {**s3_options, "bucket": bucket_name, "prefix": "inbox", "source": "s3test"}
    s3_client(opts).create_bucket(Bucket=bucket_name)
    return opts


def _connector(options: dict[str, Any], **kw: Any) -> S3PrefixConnector:
    return S3PrefixConnector(S3PrefixConfig(**{**options, **kw}))


def _upload_photos(options: dict[str, Any], photo_dir: Path, stems: tuple[str, ...]) -> None:
    for stem in stems:
        for path in sorted(photo_dir.glob(f"{stem}.*")):
            put(options, path.name, path.read_bytes())


def test_pages_through_the_listing_and_groups_sidecars(options: dict[str, Any], photo_dir: Path) -> None:
    stems = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon")
    _upload_photos(options, photo_dir, stems)
    put(options, "sub/.DS_Store", b"junk")
    put(options, "sub/deep/moon.png", (photo_dir / "moon.png").read_bytes())
    put(options, "sub/deep/moon.txt", b"The moon, one folder down.")
    put(options, "sub/", b"")  # a folder marker some tools create, here at the end of a page
    s3_client(options).put_object(Bucket=options["bucket"], Key="inbox2/astronaut.png", Body=b"outside the prefix")
    connector = _connector(options, prefix="/inbox/", page_size=3)
    requested: list[int] = []
    returned: list[list[str]] = []
    events = connector.client.meta.events
    events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: requested.append(params["MaxKeys"]))
    events.register("after-call.s3.ListObjectsV2",
                    lambda parsed, **_: returned.append([o["Key"] for o in parsed.get("Contents", ())]))
    items = connector.list_items()
    assert [i.source_id for i in items] == sorted([*stems, "sub/deep/moon"])
    # 18 keys, 3 a page; SeaweedFS ends the listing at the page ending in "inbox/sub/" and the
    # connector asks once more after it
    assert requested == [3] * 6 and sum(len(keys) for keys in returned) == 18
    assert returned[4][-1] == "inbox/sub/"
    assert all(i.problem is None and set(i.ref) == {"image", "txt"} for i in items)
    assert Item.from_json(items[0].to_json()) == items[0]


def test_fetch_reads_the_bytes_with_event_time_and_etag_from_s3(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("rocket",))
    head = s3_client(options).head_object(Bucket=options["bucket"], Key="inbox/rocket.jpg")
    connector = _connector(options)
    [item] = connector.list_items()
    assert item.ref["image"]["etag"] == head["ETag"] and item.ref["image"]["key"] == "inbox/rocket.jpg"
    [record] = connector.fetch(item)
    image = record.object("image")
    assert image is not None and image.data == (photo_dir / "rocket.jpg").read_bytes()
    assert image.media_type == "image/jpeg"
    assert record.text == (photo_dir / "rocket.txt").read_text().strip()
    assert record.sample_id == "s3test/rocket"
    assert record.event_time == head["LastModified"].astimezone(UTC) and record.event_time.tzinfo is UTC
    assert record.event_time_origin == "last_modified"
    assert record.metadata["etag"] == head["ETag"] and record.metadata["uri"].endswith("/inbox/rocket.jpg")


def test_cursor_is_the_newest_last_modified_as_utc_iso(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("chelsea",))
    client = s3_client(options)
    stamps = [client.head_object(Bucket=options["bucket"], Key=f"inbox/chelsea.{s}")["LastModified"]
              for s in ("png", "txt")]
    [item] = _connector(options).list_items()
    assert isinstance(item.cursor, str) and item.cursor.endswith("Z")
    assert datetime.fromisoformat(item.cursor) == max(stamps).astimezone(UTC)


def test_ties_at_the_cursor_are_resolved_by_id(options: dict[str, Any], photo_dir: Path) -> None:
    """S3 keeps whole seconds: objects uploaded in the same second share a cursor and none is lost."""
    _upload_photos(options, photo_dir, ("astronaut", "chelsea", "coffee"))
    connector = _connector(options)
    items = connector.list_items()
    tied = [i for i in items if i.cursor == max(str(i.cursor) for i in items)]
    committed = State().advance(tied[:1])  # a run that stopped after the first item at the cursor
    assert {i.source_id for i in connector.list_items(committed)} >= {i.source_id for i in tied[1:]}
    state = State().advance(items)
    assert connector.list_items(state) == []
    _upload_photos(options, photo_dir, ("rocket",))  # very likely in the same second as the cursor
    new = connector.list_items(state)
    assert [i.source_id for i in new] == ["rocket"]
    assert connector.list_items(state.advance(new)) == []


def test_an_overwritten_caption_is_listed_again_with_its_new_etag(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("coffee",))
    connector = _connector(options)
    [first] = connector.list_items()
    state = State().advance([first])
    time.sleep(1.1)  # LastModified has whole seconds
    put(options, "coffee.txt", b"Latte art, rewritten.")
    [again] = connector.list_items(state)
    assert again.source_id == "coffee" and str(again.cursor) > str(first.cursor)
    assert again.ref["txt"]["etag"] != first.ref["txt"]["etag"]
    assert again.ref["image"]["etag"] == first.ref["image"]["etag"]
    assert connector.fetch(again)[0].text == "Latte art, rewritten."


def test_backfill_window_selects_by_last_modified(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("chelsea", "coffee"))
    connector = _connector(options)
    stamps = [datetime.fromisoformat(str(i.cursor)) for i in connector.list_items()]
    around = Window(min(stamps) - timedelta(seconds=1), max(stamps) + timedelta(seconds=1))
    assert [i.source_id for i in connector.list_items(State(), around)] == ["chelsea", "coffee"]
    before = Window(datetime(2020, 1, 1, tzinfo=UTC), min(stamps))
    assert connector.list_items(State(), before) == []


def test_json_sidecar_gives_caption_and_event_time(options: dict[str, Any], photo_dir: Path) -> None:
    put(options, "a.png", (photo_dir / "coffee.png").read_bytes())
    put(options, "a.json", b'{"caption": "coffee", "event_time": "2025-01-01T10:00:00+01:00"}')
    connector = _connector(options)
    [record] = connector.fetch(connector.list_items()[0])
    assert (record.text, record.event_time, record.event_time_origin) == (
        "coffee", datetime(2025, 1, 1, 9, tzinfo=UTC), "sidecar")


@pytest.mark.parametrize(("files", "bad_id", "reason"), [
    ({"a.jpg": "rocket.jpg:cut", "a.txt": b"cut short"}, "a", "cannot decode image"),
    ({"a.png": "coffee.png:cut", "a.txt": b"cut short"}, "a", "cannot decode image"),
    ({"a.jpg": b"<html>an error page saved as a photo</html>", "a.txt": b"x"}, "a", "cannot decode image"),
    ({"a.png": "coffee.png", "a.txt": b" \n"}, "a", "empty caption"),
    ({"a.png": "coffee.png"}, "a", "no caption"),
    ({"a.png": "coffee.png", "a.json": b"{oops"}, "a", "invalid JSON"),
    ({"a.png": "coffee.png", "a.txt": b"\xff\xfe"}, "a", "not UTF-8"),
    ({"a.txt": b"orphan"}, "a", "caption sidecar without an image"),
    ({"a.xyz": b"mystery"}, "a.xyz", "unknown file type '.xyz'"),
    ({"a.png": "coffee.png", "a.jpg": "rocket.jpg", "a.txt": b"two images"}, "a.png", "second image"),
])
def test_malformed_objects_are_bad_records_with_their_bytes(options: dict[str, Any], photo_dir: Path,
                                                            files: dict[str, Any], bad_id: str, reason: str) -> None:
    for name, spec in files.items():
        data = spec
        if isinstance(spec, str):
            photo, _, cut = spec.partition(":")
            data = (photo_dir / photo).read_bytes()
            data = data[: len(data) // 2] if cut else data
        put(options, name, data)
    _upload_photos(options, photo_dir, ("chelsea",))
    connector = _connector(options)
    items = {i.source_id: i for i in connector.list_items()}
    assert connector.fetch(items["chelsea"])[0].text  # the good neighbour is unaffected
    with pytest.raises(BadRecordError) as err:
        connector.fetch(items[bad_id])
    assert reason in err.value.reason and err.value.source_id == bad_id
    assert "s3://" in err.value.reason  # names the object
    assert err.value.payload


def test_unknown_keys_can_be_skipped(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("chelsea",))
    put(options, "manifest.csv", b"a,b")
    assert [i.source_id for i in _connector(options, skip_unknown=True).list_items()] == ["chelsea"]
    assert [i.source_id for i in _connector(options, image_suffixes=("png",), caption_suffixes=("txt",),
                                            skip_unknown=True).list_items()] == ["chelsea"]


def test_an_object_deleted_after_listing_is_a_bad_record(options: dict[str, Any], photo_dir: Path) -> None:
    _upload_photos(options, photo_dir, ("chelsea",))
    connector = _connector(options)
    [item] = connector.list_items()
    s3_client(options).delete_object(Bucket=options["bucket"], Key="inbox/chelsea.png")
    with pytest.raises(BadRecordError, match="deleted after it was listed"):
        connector.fetch(item)


@pytest.mark.parametrize(("change", "setting"), [
    ({"aws_secret_access_key": SecretStr("wrong-secret")}, "aws_secret_access_key"),
    ({"aws_access_key_id": "nobody"}, "aws_access_key_id"),
    ({"bucket": "no-such-bucket-here"}, "bucket"),
])
def test_misconfiguration_is_a_config_error_naming_the_setting(options: dict[str, Any], change: dict[str, Any],
                                                               setting: str) -> None:
    connector = load_connector("s3_prefix", {**options, **change})
    with pytest.raises(ConfigError) as err:
        connector.check()
    assert err.value.setting == setting and setting in str(err.value)
    assert "wrong-secret" not in str(err.value)
    with pytest.raises(ConfigError):
        connector.list_items(State(), Window())


def test_unreachable_endpoint_is_a_config_error_at_check_and_retriable_while_running() -> None:
    port = free_port_block(1)
    connector = _connector({"bucket": "bucket-x", "endpoint_url": f"http://127.0.0.1:{port}",
                            "aws_access_key_id": "a", "aws_secret_access_key": SecretStr("b")},
                           max_attempts=1, connect_timeout_s=1)
    with pytest.raises(ConfigError) as err:
        connector.check()
    assert err.value.setting == "endpoint_url" and str(port) in str(err.value)
    with pytest.raises(RetriableError):
        connector.list_items()


class _SlowDownHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request like a throttling S3 (503 SlowDown)."""

    def do_GET(self) -> None:
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def throttling_endpoint() -> Iterator[str]:
    """SeaweedFS cannot be made to throttle on demand, so a loopback HTTP server answers 503 SlowDown."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowDownHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_throttling_is_retriable_not_a_config_error(throttling_endpoint: str) -> None:
    connector = _connector({"bucket": "bucket-x", "endpoint_url": throttling_endpoint,
                            "aws_access_key_id": "a", "aws_secret_access_key": SecretStr("b")}, max_attempts=1)
    with pytest.raises(RetriableError, match="SlowDown"):
        connector.check()
    with pytest.raises(RetriableError, match="retry later"):
        connector.list_items()
    with pytest.raises(RetriableError):
        connector.fetch(Item("a", cursor="2026-01-01T00:00:00.000000Z",
                             ref={"image": {"key": "a.png", "size": 10, "etag": '"x"', "last_modified": ""}}))
    connector.close()


def test_config_is_strict_and_the_module_imports_no_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, connectors.s3_prefix; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    with pytest.raises(ConfigError, match="not_an_option"):
        load_connector("s3_prefix", {"bucket": "abc", "not_an_option": 1})
    with pytest.raises(ConfigError, match="page_size"):
        load_connector("s3_prefix", {"bucket": "abc", "page_size": 5000})
    with pytest.raises(ConfigError, match="caption_suffixes"):
        load_connector("s3_prefix", {"bucket": "abc", "caption_suffixes": [".csv"]})
