"""Contract harness for the SQL connector: a real table in this session's own PostgreSQL database."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.sql_database import connect_options, execute, execute_many, session_database

_INSERT = "INSERT INTO {table} (note_id, created_at, body, patient) VALUES (%s, %s, %s, %s)"


class SqlHarness:
    name = "sql"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        dbname = session_database(request)
        table = f"notes_{secrets.token_hex(4)}"
        execute(dbname, f"CREATE TABLE {table} (note_id text, created_at timestamptz, body text, patient text)")
        request.addfinalizer(lambda: execute(dbname, f"DROP TABLE IF EXISTS {table}"))
        execute_many(dbname, _INSERT.format(table=table), [
            ("n-1", "2026-01-01T09:00:00+00:00", "Chest X-ray: no acute findings.", "p1"),
            ("n-2", "2026-01-01T10:00:00+01:00", "Follow-up in two weeks.", "p2"),
            ("n-3", "2026-01-01T09:00:00+00:00", "Patient reports mild pain.", "p1"),
        ])
        return {**connect_options(dbname), "source": "contract_sql", "table": table, "id_column": "note_id",
                "time_column": "created_at", "text_column": "body", "key_columns": {"patient_id": "patient"},
                "batch_size": 2}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        execute_many(options["dbname"], _INSERT.format(table=options["table"]), [
            ("n-0", "2026-01-01T09:00:00+00:00", "Same time as the newest committed note.", "p3"),  # a tie
            ("n-4", "2026-01-03T00:00:00+00:00", "Discharged.", "p2"),
        ])
        return {"n-0", "n-4"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        execute_many(options["dbname"], _INSERT.format(table=options["table"]), [
            ("no-time", None, "A note that lost its timestamp.", "p1"),
            ("no-text", "2026-01-04T00:00:00+00:00", None, "p1"),
            ("blank", "2026-01-04T00:00:00+00:00", "   ", "p1"),
        ])
        return {"no-time", "no-text", "blank"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "dbname": f"{options['dbname']}_missing"},
            {**options, "port": 1},
            {**options, "user": "no_such_role_rosetta"},
            {**options, "table": "no_such_table"},
            {**options, "table": "notes; DROP TABLE x"},
            {**options, "text_column": "no_such_column"},
            {**options, "timezone": "Not/AZone"},
            {k: v for k, v in options.items() if k != "table"},
        ]


HARNESS = SqlHarness()
