"""The tabular connector on real files: types, time zones, cursors and every malformed input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.sdk import State, Window, load_connector
from connectors.tabular import TabularConnector
from rosetta.core.errors import BadRecordError, ConfigError
from schemas.records import SourceRecord

BASE = {"id_column": "id", "time_column": "t", "text_column": "text"}


def _connector(path: Path | str, **options: Any) -> TabularConnector:
    connector = load_connector("tabular", {"path": str(path), **BASE, **options})
    assert isinstance(connector, TabularConnector)
    return connector


def _outcomes(connector: TabularConnector, state: State | None = None,
              window: Window | None = None) -> tuple[dict[str, SourceRecord], dict[str, BadRecordError]]:
    good: dict[str, SourceRecord] = {}
    bad: dict[str, BadRecordError] = {}
    for item in connector.list_items(state or State(), window or Window()):
        try:
            [good[item.source_id]] = connector.fetch(item)
        except BadRecordError as exc:
            bad[item.source_id] = exc
    return good, bad


def test_module_import_stays_light() -> None:
    code = "import sys, connectors.tabular; assert 'pyarrow' not in sys.modules, 'pyarrow imported at module level'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parquet_native_timestamps_naive_ones_in_the_configured_zone(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    berlin = ZoneInfo("Europe/Berlin")
    pq.write_table(pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "t": pa.array([datetime(2026, 7, 1, 12), datetime(2026, 1, 1, 12), datetime(2026, 1, 2)],
                      pa.timestamp("us")),  # naive: wall-clock time in Berlin
        "text": ["summer", "winter", "new year"],
        "patient": ["p1", "p2", "p1"],
        "score": [0.5, float("nan"), 2.0],
    }), tmp_path / "a.parquet")
    connector = _connector(tmp_path / "a.parquet", timezone="Europe/Berlin", key_columns={"patient_id": "patient"},
                           metadata_columns=["score"])
    good, bad = _outcomes(connector)
    assert not bad
    assert good["1"].event_time == datetime(2026, 7, 1, 12, tzinfo=berlin).astimezone(UTC)  # CEST, UTC+2
    assert good["2"].event_time == datetime(2026, 1, 1, 11, tzinfo=UTC)  # CET, UTC+1
    assert good["1"].keys == {"patient_id": "p1"} and good["1"].text == "summer"
    assert good["1"].object("text") is not None and good["1"].object("image") is None
    assert good["2"].metadata == {"score": None}  # NaN is not JSON: kept as null
    items = connector.list_items(State(), Window())
    assert [i.cursor for i in items] == sorted(str(i.cursor) for i in items)  # (cursor, id) order
    assert items[0].cursor == "2026-01-01T11:00:00.000000Z"


def test_integer_id_cursor_for_append_only_tables(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("id,t,text\n7,2026-01-01T00:00:00Z,a\n10,2026-01-01T00:00:00Z,b\n"
                                      "x9,2026-01-01T00:00:00Z,c\n", encoding="utf-8")
    connector = _connector(tmp_path / "log.csv", cursor="id")
    items = connector.list_items(State(), Window())
    assert [(i.source_id, i.cursor) for i in items if not i.problem] == [("7", 7), ("10", 10)]
    assert "not an integer" in (next(i for i in items if i.source_id == "x9").problem or "")
    committed = State(cursor=7, seen_at_cursor=frozenset({"7"}))
    assert [i.source_id for i in connector.list_items(committed, Window()) if not i.problem] == ["10"]


def test_csv_malformed_rows_are_quarantined_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(
        b"id,t,text\n"
        b"ok,2026-01-01T00:00:00+05:00,\"fine, quoted\"\n"
        b",2026-01-01T00:00:00Z,no id\n"
        b"latin,2026-01-01T00:00:00Z,caf\xe9\n"
        b"ragged,2026-01-01T00:00:00Z,a,b\n"
        b"blank,2026-01-01T00:00:00Z,\n")
    good, bad = _outcomes(_connector(tmp_path / "a.csv"))
    assert set(good) == {"ok"} and good["ok"].event_time == datetime(2025, 12, 31, 19, tzinfo=UTC)
    assert good["ok"].text == "fine, quoted"
    no_id = next(k for k in bad if k.endswith("#row1"))
    assert "id is missing" in bad[no_id].reason and b"no id" in (bad[no_id].payload or b"")
    assert "not UTF-8" in bad["latin"].reason and bad["latin"].payload
    assert "has 4 fields" in bad["ragged"].reason and bad["ragged"].payload == b"ragged,2026-01-01T00:00:00Z,a,b"
    assert "text is empty" in bad["blank"].reason
    good, bad = _outcomes(_connector(tmp_path / "a.csv", require_text=False))
    assert good["blank"].text is None and good["blank"].objects == ()


def test_jsonl_with_mixed_types_and_a_broken_line_still_loads_the_rest(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"id": 1, "t": "2026-01-01T00:00:00Z", "text": "string time"}\n'
        '{"id": 2, "t": 1767225600, "text": "epoch seconds"}\n'
        '{"id": 3, "t": "2026-01-01T00:00:00Z", "text": \n'
        '[1, 2]\n', encoding="utf-8")
    good, bad = _outcomes(_connector(tmp_path / "a.jsonl"))
    assert good["2"].event_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert set(good) == {"1", "2"}
    assert {k.rsplit("#", 1)[-1] for k in bad} == {"line3", "line4"}


def test_unparseable_file_is_one_problem_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.csv").write_text("id,t,text\n1,2026-01-01T00:00:00Z,a\n", encoding="utf-8")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "bad.jsonl").write_text("nothing here is json\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored: not a table suffix", encoding="utf-8")
    good, bad = _outcomes(_connector(tmp_path))
    assert set(good) == {"1"}
    assert set(bad) == {f"file:{tmp_path}/bad.parquet", f"file:{tmp_path}/bad.jsonl"}
    assert "bad.parquet" in str(bad[f"file:{tmp_path}/bad.parquet"])
    assert bad[f"file:{tmp_path}/bad.parquet"].payload == b"not parquet at all"  # kept for quarantine


def test_images_by_relative_absolute_and_file_url_paths_and_their_failures(tmp_path: Path, photo_dir: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copyfile(photo_dir / "chelsea.png", images / "cat.png")
    shutil.copyfile(photo_dir / "rocket.jpg", images / "rocket.jpg")
    (images / "fake.png").write_text("I am text", encoding="utf-8")
    rows = [
        {"id": "rel", "t": "2026-01-01T00:00:00Z", "text": "a", "img": "cat.png"},
        {"id": "abs", "t": "2026-01-01T00:00:00Z", "text": "b", "img": str(images / "rocket.jpg")},
        {"id": "url", "t": "2026-01-01T00:00:00Z", "text": "c", "img": (images / "cat.png").as_uri()},
        {"id": "none", "t": "2026-01-01T00:00:00Z", "text": "d", "img": None},
        {"id": "missing", "t": "2026-01-01T00:00:00Z", "text": "e", "img": "gone.png"},
        {"id": "fake", "t": "2026-01-01T00:00:00Z", "text": "f", "img": "fake.png"},
        {"id": "web", "t": "2026-01-01T00:00:00Z", "text": "g", "img": "https://example.com/x.png"},
    ]
    table = tmp_path / "rows.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    good, bad = _outcomes(_connector(table, image_column="img", image_base_dir=str(images)))
    assert good["rel"].object("image").data == (photo_dir / "chelsea.png").read_bytes()  # type: ignore[union-attr]
    assert good["rel"].object("image").media_type == "image/png"  # type: ignore[union-attr]
    assert good["abs"].object("image").media_type == "image/jpeg"  # type: ignore[union-attr]
    assert good["url"].object("image") is not None and good["none"].object("image") is None
    assert "does not exist" in bad["missing"].reason and "gone.png" in bad["missing"].reason
    assert "not a JPEG" in bad["fake"].reason and bad["fake"].payload == b"I am text"
    assert "web URL" in bad["web"].reason


def test_newest_row_wins_for_an_id_and_window_selects_by_event_time(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,t,text\n1,2026-01-01T00:00:00Z,old\n2,2026-01-05T00:00:00Z,x\n",
                                    encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,t,text\n1,2026-01-03T00:00:00Z,updated\n", encoding="utf-8")
    connector = _connector(tmp_path / "*.csv")
    good, _ = _outcomes(connector)
    assert good["1"].text == "updated"
    window = Window(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC))
    assert [i.source_id for i in connector.list_items(State(), window)] == ["1"]


def test_misconfiguration_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path"):
        _connector(tmp_path / "nothing-*.csv").check()
    with pytest.raises(ConfigError, match="timezone"):
        _connector(tmp_path, timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="cursor"):
        _connector(tmp_path, cursor="rowid")


@pytest.mark.integration
def test_reads_tables_and_images_from_s3(seaweedfs: Any, s3_options: dict[str, Any], bucket_name: str,
                                         photo_dir: Path, tmp_path: Path) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    client = boto3.client("s3", endpoint_url=s3_options["endpoint_url"], region_name="us-east-1",
                          aws_access_key_id=s3_options["aws_access_key_id"],
                          aws_secret_access_key=s3_options["aws_secret_access_key"].get_secret_value())
    client.create_bucket(Bucket=bucket_name)
    pq.write_table(pa.table({"id": ["a", "b"], "t": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"],
                             "text": ["cat", "lost"], "img": ["img/cat.png", "img/lost.png"]}),
                   tmp_path / "x.parquet")
    client.upload_file(str(tmp_path / "x.parquet"), bucket_name, "ann/2026/x.parquet")
    client.put_object(Bucket=bucket_name, Key="ann/2026/readme.txt", Body=b"not a table")
    client.upload_file(str(photo_dir / "chelsea.png"), bucket_name, "ann/2026/img/cat.png")
    options = {"s3_endpoint_url": s3_options["endpoint_url"], "aws_access_key_id": s3_options["aws_access_key_id"],
               "aws_secret_access_key": s3_options["aws_secret_access_key"], "image_column": "img"}
    connector = _connector(f"s3://{bucket_name}/ann/*/*.parquet", **options)
    connector.check()
    good, bad = _outcomes(connector)
    assert set(good) == {"a"} and good["a"].object("image").data == (photo_dir / "chelsea.png").read_bytes()  # type: ignore[union-attr]
    assert "does not exist" in bad["b"].reason
    assert [i.source_id for i in _connector(f"s3://{bucket_name}/ann", **options).list_items()] == ["a", "b"]
    with pytest.raises(ConfigError, match="credentials"):
        _connector(f"s3://{bucket_name}/ann/", **{**options, "aws_secret_access_key": "wrong"}).check()
