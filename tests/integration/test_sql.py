"""The SQL connector against the machine's real PostgreSQL, in a database these tests create and drop."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.sdk import State, Window, load_connector
from connectors.sql import SqlConnector
from rosetta.core.errors import BadRecordError, ConfigError, RetriableError
from tests.sql_database import admin_execute, connect_options, execute, execute_many, session_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def sql_db(request: pytest.FixtureRequest) -> str:
    """This session's own database (created once, dropped at session end)."""
    return session_database(request)


@pytest.fixture
def table(sql_db: str) -> Iterator[str]:
    """A fresh table: serial cursor ``seq``, naive local timestamps ``taken``, text and a patient key."""
    name = f"reports_{secrets.token_hex(4)}"
    execute(sql_db, f"CREATE TABLE {name} (seq bigserial, report_id integer, taken timestamp, body text, "
                    "patient text, site text)")
    yield name
    execute(sql_db, f"DROP TABLE IF EXISTS {name}")


def _insert(dbname: str, table: str, rows: list[tuple[Any, ...]]) -> None:
    execute_many(dbname, f"INSERT INTO {table} (report_id, taken, body, patient, site) VALUES (%s, %s, %s, %s, %s)",
                 rows)


def _connector(db: str, /, **options: Any) -> SqlConnector:
    connector = load_connector("sql", {**connect_options(db), "id_column": "report_id", "time_column": "taken",
                                       "text_column": "body", **options})
    assert isinstance(connector, SqlConnector)
    return connector


def test_module_import_stays_light() -> None:
    code = "import sys, connectors.sql; assert 'psycopg' not in sys.modules, 'psycopg imported at module level'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_naive_timestamps_use_the_configured_zone_and_the_time_cursor_is_pushed_down(sql_db: str,
                                                                                     table: str) -> None:
    _insert(sql_db, table, [(1, datetime(2026, 3, 1, 8), "a", "p1", "x"), (2, datetime(2026, 7, 1, 8), "b", "p2", "y"),
                            (3, datetime(2026, 7, 1, 8), "c", "p1", "x")])
    ny = ZoneInfo("America/New_York")
    with _connector(sql_db, table=table, timezone="America/New_York", key_columns={"patient_id": "patient"},
                    metadata_columns=["site"], batch_size=1) as connector:
        items = connector.list_items(State(), Window())
        assert [(i.source_id, i.cursor) for i in items] == [
            ("1", "2026-03-01T13:00:00.000000Z"), ("2", "2026-07-01T12:00:00.000000Z"),
            ("3", "2026-07-01T12:00:00.000000Z")]  # EST then EDT; ties ordered by id
        [record] = connector.fetch(items[0])
        assert record.event_time == datetime(2026, 3, 1, 8, tzinfo=ny).astimezone(UTC)
        assert record.keys == {"patient_id": "p1"} and record.metadata == {"site": "x"} and record.text == "a"

        rows_read: list[dict[str, Any]] = []
        run = connector._run

        def counting_run(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            for row in run(*args, **kwargs):
                rows_read.append(row)
                yield row

        connector._run = counting_run
        tie = State(cursor="2026-07-01T12:00:00.000000Z", seen_at_cursor=frozenset({"2"}))
        assert [i.source_id for i in connector.list_items(tie, Window())] == ["3"]
        assert [r["report_id"] for r in rows_read] == [3]  # the server filtered: older rows never travelled


def test_integer_cursor_column_and_a_join_query(sql_db: str, table: str) -> None:
    _insert(sql_db, table, [(10, datetime(2026, 1, 1), "first", "p1", "x"),
                            (11, datetime(2025, 1, 1), "late", "p2", "y")])
    query = (f"SELECT r.seq, r.report_id, r.taken, r.body || ' @ ' || s.label AS body, r.patient FROM {table} r "
             "JOIN (VALUES ('x', 'site X'), ('y', 'site Y')) AS s(code, label) ON s.code = r.site")
    with _connector(sql_db, query=query, cursor_column="seq") as connector:
        items = connector.list_items(State(), Window())
        assert [(i.source_id, i.cursor) for i in items] == [("10", 1), ("11", 2)]  # by insertion, not event time
        assert connector.fetch(items[1])[0].text == "late @ site Y"
        _insert(sql_db, table, [(12, datetime(2024, 1, 1), "backdated", "p1", "x")])
        state = State().advance(items)
        assert [i.source_id for i in connector.list_items(state, Window())] == ["12"]


def test_values_are_bound_parameters_even_hostile_ids(sql_db: str) -> None:
    name = f"notes_{secrets.token_hex(4)}"
    execute(sql_db, f"CREATE TABLE {name} (note text, at timestamptz, body text)")
    try:
        hostile = "x'); DROP TABLE " + name + "; --"
        execute_many(sql_db, f"INSERT INTO {name} VALUES (%s, %s, %s)",
                     [(hostile, "2026-01-01T00:00:00Z", "a"), ("plain", "2026-01-01T00:00:00Z", "b")])
        with load_connector("sql", {**connect_options(sql_db), "table": name, "id_column": "note",
                                    "time_column": "at", "text_column": "body"}) as connector:
            state = State(cursor="2026-01-01T00:00:00.000000Z", seen_at_cursor=frozenset({hostile}))
            assert [i.source_id for i in connector.list_items(state, Window())] == ["plain"]
            assert len(connector.list_items(State(), Window())) == 2  # the table is still there
    finally:
        execute(sql_db, f"DROP TABLE IF EXISTS {name}")


def test_null_ids_times_and_empty_text_are_bad_records(sql_db: str, table: str) -> None:
    _insert(sql_db, table, [(1, datetime(2026, 1, 1), "ok", "p1", "x"),
                            (None, datetime(2026, 1, 2), "no id", "p1", "x"),
                            (3, None, "no time", "p1", "x"), (4, datetime(2026, 1, 3), "", "p1", "x")])
    with _connector(sql_db, table=table) as connector:
        items = connector.list_items(State(), Window())
        bad: dict[str, BadRecordError] = {}
        for item in items:
            try:
                connector.fetch(item)
            except BadRecordError as exc:
                bad[item.source_id] = exc
        null_id = next(k for k in bad if k.startswith("null-id:"))
        assert "report_id is missing" in bad[null_id].reason and b"no id" in (bad[null_id].payload or b"")
        assert "taken is NULL" in bad["3"].reason or "taken is missing" in bad["3"].reason
        assert "body is empty" in bad["4"].reason
        assert set(bad) == {null_id, "3", "4"}
        assert [i.source_id for i in connector.list_items(State(), Window())] == [i.source_id for i in items]
        # a backfill window lists only rows it can place (an id and a time inside it)
        window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 12, tzinfo=UTC))
        assert [i.source_id for i in connector.list_items(State(), window)] == ["1"]


def test_misconfiguration_is_a_config_error_naming_the_setting(sql_db: str, table: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"dbname": "rosetta_no_such_db_zz"}, "dbname"),
        ({"port": 1}, "host/port"),
        ({"host": "no-such-host.invalid"}, "host/port"),
        ({"user": "no_such_role_zz"}, "user"),
        ({"table": "no_such_table"}, "table"),
        ({"text_column": "no_such_col"}, "text_column"),
        ({"query": "SELECT report_id, taken, body FROM nowhere"}, "query"),
    ]
    for override, setting in cases:
        options = {"table": table, **override}
        if "query" in override:
            options.pop("table")
        with pytest.raises(ConfigError) as info:
            _connector(sql_db, **options).check()
        assert info.value.setting == setting, (override, str(info.value))
    with pytest.raises(ConfigError) as info:
        load_connector("sql", {"dsn": "postgresql://postgres@127.0.0.1:5432/rosetta_no_such_db_zz", "table": table,
                               "id_column": "report_id", "time_column": "taken"}).check()
    assert info.value.setting == "dsn" and "does not exist" in str(info.value)
    for bad in ({"table": "t; DROP TABLE x"}, {"id_column": "id\"--"}, {"table": "a.b.c"},
                {"query": "SELECT 1; DROP TABLE x"}, {"query": "DELETE FROM x"}):
        with pytest.raises(ConfigError):
            _connector(sql_db, **{"table": table, **bad})


def test_a_dropped_connection_is_retriable_and_the_next_call_reconnects(sql_db: str, table: str) -> None:
    _insert(sql_db, table, [(1, datetime(2026, 1, 1), "ok", "p1", "x")])
    with _connector(sql_db, table=table) as connector:
        assert len(connector.list_items(State(), Window())) == 1
        admin_execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{sql_db}' "
                      f"AND application_name = 'rosetta-sql' AND pid <> pg_backend_pid()")
        with pytest.raises(RetriableError, match="retry later"):
            connector.list_items(State(), Window())
        assert len(connector.list_items(State(), Window())) == 1
