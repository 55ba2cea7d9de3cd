"""A throwaway PostgreSQL database for the SQL connector's tests.

The machine's PostgreSQL (127.0.0.1:5432, trust auth) is shared, so tests only
ever touch a database they created themselves (``rosetta_contract_<random>``),
created once per test session and dropped when the session ends.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
_KEY = pytest.StashKey[str]()


def admin_execute(statement: str) -> None:
    """Run one statement on the maintenance database (autocommit: CREATE/DROP DATABASE need it)."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(statement)


def session_database(request: pytest.FixtureRequest) -> str:
    """The name of this session's own database, created on first use and dropped at session end."""
    stash = request.session.stash
    if _KEY not in stash:
        name = f"rosetta_contract_{secrets.token_hex(6)}"
        admin_execute(f'CREATE DATABASE "{name}"')
        request.session.config.add_cleanup(lambda: admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        stash[_KEY] = name
    return stash[_KEY]


def connect_options(dbname: str) -> dict[str, Any]:
    """Connector options that reach ``dbname`` (host/port/dbname/user form)."""
    return {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "dbname": dbname}


def execute(dbname: str, statement: str, params: Any = None) -> None:
    """Run one statement (with bound ``params``) in ``dbname`` and commit."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=10) as conn:
        conn.execute(statement, params)


def execute_many(dbname: str, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Run ``statement`` once per row of bound values in ``dbname`` and commit."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=10) as conn, \
            conn.cursor() as cur:
        cur.executemany(statement, rows)
