"""A PostgreSQL table or query as a source, read incrementally by a cursor column.

One record per row: ``id_column`` is the stable source id, ``time_column`` the
event time (``timestamp without time zone`` values are read in the configured
``timezone``; the session runs in that zone so comparisons agree), and
``cursor_column`` (default: the time column) orders rows for incremental runs:
a timestamp cursor is kept as an ISO 8601 UTC string, an integer or numeric
cursor (a sequence, a version) as a number.

Listing pushes the state down to the server (``cursor > %s OR (cursor = %s AND
id NOT IN seen)``, ordered by cursor then id) and reads in batches through a
server-side cursor.  Values always travel as bound parameters; table and
column names are checked against a strict identifier pattern and quoted.

Errors: bad credentials, an unknown database or an unreachable host are a
ConfigError naming the setting; a dropped connection is a RetriableError; a
row with a NULL id, time or cursor, or empty text, is a BadRecordError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.sdk.base import Connector, ConnectorConfig, CursorValue, Item, State, Window
from connectors.sdk.rows import RowMapping, jsonable, problem_error, select_new, zone_from_name
from rosetta.core.errors import ConfigError, RetriableError
from rosetta.core.timeutil import coerce_utc, isoformat_z
from schemas.records import SourceRecord

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: PostgreSQL type OIDs of cursor columns, by how the cursor is kept in the state.
_TIME_OIDS = {1082, 1114, 1184}  # date, timestamp, timestamptz
_INT_OIDS = {20, 21, 23}  # int8, int2, int4
_FLOAT_OIDS = {700, 701, 1700}  # float4, float8, numeric
CursorKind = Literal["time", "int", "float", "text"]


def _check_identifier(value: str | None, *, dotted: bool = False) -> str | None:
    if value is None:
        return None
    parts = value.split(".") if dotted else [value]
    if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _; "
                         f"{'schema.table' if dotted else 'no dots'}); use query= for anything else")
    return value


class SqlConfig(ConnectorConfig):
    """How to reach the database and which columns mean what.

    Give ``dsn`` (a libpq connection string or URL, kept secret) or
    ``host``/``port``/``dbname``/``user``/``password``; and ``table``
    (``name`` or ``schema.name``) or ``query`` (a SELECT, used as a subquery).
    ``timezone`` (IANA) is the zone of naive timestamps; ``batch_size`` is
    rows per round trip; ``connect_timeout_s`` is in seconds.
    """

    source: str = Field(default="sql", pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    dsn: SecretStr | None = None
    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    table: str | None = None
    query: str | None = None
    id_column: str
    time_column: str
    cursor_column: str | None = None
    text_column: str | None = None
    require_text: bool = True
    key_columns: dict[str, str] = Field(default_factory=dict)
    metadata_columns: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    connect_timeout_s: int = Field(default=10, ge=1, le=300)

    @field_validator("table")
    @classmethod
    def _table_is_identifier(cls, value: str | None) -> str | None:
        return _check_identifier(value, dotted=True)

    @field_validator("id_column", "time_column", "cursor_column", "text_column")
    @classmethod
    def _column_is_identifier(cls, value: str | None) -> str | None:
        return _check_identifier(value)

    @field_validator("key_columns")
    @classmethod
    def _key_columns_are_identifiers(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value.values():
            _check_identifier(column)
        return value

    @field_validator("metadata_columns")
    @classmethod
    def _metadata_columns_are_identifiers(cls, value: list[str]) -> list[str]:
        for column in value:
            _check_identifier(column)
        return value

    @field_validator("query")
    @classmethod
    def _query_is_one_select(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().rstrip(";").strip()
        if not re.match(r"(?is)^(select|with)\b", text) or ";" in text:
            raise ValueError("query must be one SELECT (or WITH ... SELECT) statement without ';'")
        return text

    @model_validator(mode="after")
    def _one_source_and_one_address(self) -> SqlConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table and query")
        if self.dsn is None and self.dbname is None:
            raise ValueError("give dsn, or dbname (with host, port, user, password as needed)")
        return self


class SqlConnector(Connector[SqlConfig]):
    """Reads rows of a PostgreSQL table or query with psycopg 3; one connection, opened lazily."""

    name = "sql"
    config_class = SqlConfig
    requires = ("psycopg",)
    extra = "sql"

    def __init__(self, config: SqlConfig) -> None:
        super().__init__(config)
        self.zone = zone_from_name(config.timezone)
        self.cursor_column = config.cursor_column or config.time_column
        self.mapping = RowMapping(
            id_field=config.id_column, time_field=config.time_column, zone=self.zone,
            text_field=config.text_column, require_text=config.require_text,
            key_fields=dict(config.key_columns), metadata_fields=tuple(config.metadata_columns))
        self._conn: Any = None
        self._cursor_kind: CursorKind | None = None

    # -- connection --------------------------------------------------------------------------------
    def _connection(self) -> Any:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        config = self.config
        params: dict[str, Any] = {"connect_timeout": config.connect_timeout_s,
                                  "application_name": f"rosetta-{config.source}"[:63]}
        for name in ("host", "dbname", "user"):
            if getattr(config, name) is not None:
                params[name] = getattr(config, name)
        if config.host is not None:
            params["port"] = config.port
        if config.password is not None:
            params["password"] = config.password.get_secret_value()
        conninfo = config.dsn.get_secret_value() if config.dsn else ""
        try:
            conn = psycopg.connect(conninfo, **params)
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from None
        try:
            conn.execute("SELECT set_config('TimeZone', %s, false)", [config.timezone])
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise ConfigError(f"PostgreSQL refused timezone {config.timezone!r} ({exc})", setting="timezone") from None
        self._conn = conn
        return conn

    def _connect_error(self, exc: Exception) -> ConfigError:
        text = str(exc).strip().replace("\n", " ")
        via_dsn = self.config.dsn is not None
        if "password authentication failed" in text or "no password supplied" in text:
            setting = "dsn" if via_dsn else "user/password"
            fix = "check the user and password"
        elif re.search(r'database ".*" does not exist', text):
            setting, fix = ("dsn" if via_dsn else "dbname"), "check the database name"
        elif re.search(r'role ".*" does not exist', text):
            setting, fix = ("dsn" if via_dsn else "user"), "check the user name"
        else:
            setting = "dsn" if via_dsn else "host/port"
            fix = "check the host and port and that PostgreSQL is running and reachable"
        return ConfigError(f"cannot connect to PostgreSQL for source {self.config.source!r}: {text[:300]}; {fix}",
                           setting=setting)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- SQL building ------------------------------------------------------------------------------
    def _source_sql(self) -> Any:
        from psycopg import sql

        if self.config.table is not None:
            return sql.SQL("{} AS src").format(sql.Identifier(*self.config.table.split(".")))
        return sql.SQL("({}) AS src").format(sql.SQL(self.config.query))  # type: ignore[arg-type]

    def _columns(self) -> list[str]:
        config = self.config
        wanted = [config.id_column, config.time_column, self.cursor_column, config.text_column,
                  *config.key_columns.values(), *config.metadata_columns]
        return list(dict.fromkeys(c for c in wanted if c is not None))

    @contextmanager
    def _guard(self) -> Iterator[Any]:
        """The open connection; PostgreSQL errors become Rosetta's (retriable or config), the read is ended."""
        import psycopg

        conn = self._connection()
        try:
            yield conn
            conn.rollback()  # end the read transaction; nothing was written
        except psycopg.OperationalError as exc:
            self.close()
            raise RetriableError(f"PostgreSQL connection for source {self.config.source!r} failed during a query "
                                 f"({str(exc).strip()[:300]}); retry later") from None
        except psycopg.Error as exc:
            self.close()  # a misconfigured query will not work on retry; do not leave the session open
            raise self._query_error(exc) from None

    def _run(self, query: Any, params: dict[str, Any], *, name: str) -> Iterator[dict[str, Any]]:
        """Rows of ``query`` as dicts, read ``batch_size`` at a time through server-side cursor ``name``."""
        from psycopg.rows import dict_row

        with self._guard() as conn, conn.cursor(name=name, row_factory=dict_row) as cur:
            cur.execute(query, params)
            while batch := cur.fetchmany(self.config.batch_size):
                yield from batch

    def _query_error(self, exc: Exception) -> ConfigError:
        text = str(exc).strip().split("\n")[0]
        setting = "query" if self.config.query is not None else "table"
        match = re.search(r'column "?([^" ]+)"? does not exist', text)
        if match:
            column = match.group(1).split(".")[-1]
            named = [f for f in ("id_column", "time_column", "cursor_column", "text_column")
                     if getattr(self.config, f) == column]
            setting = named[0] if named else ("key_columns" if column in self.config.key_columns.values()
                                              else "metadata_columns")
        return ConfigError(f"PostgreSQL rejected the query for source {self.config.source!r}: {text[:300]}",
                           setting=setting)

    def cursor_kind(self) -> CursorKind:
        """How the cursor column is kept in the state, from its PostgreSQL type (probed once)."""
        from psycopg import sql

        if self._cursor_kind is None:
            columns = self._columns()
            probe = sql.SQL("SELECT {} FROM {} LIMIT 0").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns), self._source_sql())
            with self._guard() as conn, conn.cursor() as cur:
                cur.execute(probe)
                oid = cur.description[columns.index(self.cursor_column)].type_code
            self._cursor_kind = ("time" if oid in _TIME_OIDS else "int" if oid in _INT_OIDS
                                 else "float" if oid in _FLOAT_OIDS else "text")
        return self._cursor_kind

    def check(self) -> None:
        """Connect and probe the columns: ConfigError if the database, table or a column is wrong."""
        self.cursor_kind()

    # -- listing -----------------------------------------------------------------------------------
    def list_items(self, state: State | None = None, window: Window | None = None) -> list[Item]:
        """Rows past ``state`` (and with a time in ``window``), in (cursor, id) order.

        Rows whose id or cursor is NULL cannot be placed incrementally: they
        are listed as problem items on every unbounded run until fixed.
        """
        from psycopg import sql

        state, window = state or State(), window or Window()
        kind = self.cursor_kind()
        cursor_col, id_col = sql.Identifier(self.cursor_column), sql.Identifier(self.config.id_column)
        time_col = sql.Identifier(self.config.time_column)
        conditions = [sql.SQL("{} IS NOT NULL AND {} IS NOT NULL").format(cursor_col, id_col)]
        params: dict[str, Any] = {}
        if state.cursor is not None:
            params["cursor"] = self._cursor_param(state.cursor, kind)
            params["seen"] = sorted(state.seen_at_cursor)
            conditions.append(sql.SQL("({c} > %(cursor)s OR ({c} = %(cursor)s AND NOT (CAST({i} AS text) = "
                                      "ANY(%(seen)s::text[]))))").format(c=cursor_col, i=id_col))
        if window.start is not None:
            params["start"] = window.start
            conditions.append(sql.SQL("{} >= %(start)s").format(time_col))
        if window.end is not None:
            params["end"] = window.end
            conditions.append(sql.SQL("{} < %(end)s").format(time_col))
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in self._columns())
        query = sql.SQL("SELECT {cols} FROM {src} WHERE {where} ORDER BY {c}, {i}").format(
            cols=columns, src=self._source_sql(), where=sql.SQL(" AND ").join(conditions), c=cursor_col, i=id_col)
        items = [self._row_item(row, kind) for row in self._run(query, params, name="rosetta_list")]
        if not window.bounded:
            orphans = sql.SQL("SELECT {cols} FROM {src} WHERE {c} IS NULL OR {i} IS NULL ORDER BY {i}").format(
                cols=columns, src=self._source_sql(), c=cursor_col, i=id_col)
            items += [self._row_item(row, kind) for row in self._run(orphans, {}, name="rosetta_orphans")]
        return select_new(items, state, window)

    def _cursor_param(self, cursor: CursorValue, kind: CursorKind) -> Any:
        try:
            if kind == "time":
                return datetime.fromisoformat(str(cursor))
            if kind == "int":
                return int(cursor)
            if kind == "float":
                return float(cursor)
            return str(cursor)
        except (TypeError, ValueError):
            raise ConfigError(f"state cursor {cursor!r} does not fit cursor column {self.cursor_column!r} ({kind}); "
                              "reset the source's state", setting="state") from None

    def _row_item(self, row: dict[str, Any], kind: CursorKind) -> Item:
        canonical = json.dumps(jsonable(row), sort_keys=True).encode("utf-8")
        fallback = f"null-id:{hashlib.sha256(canonical).hexdigest()[:16]}"
        item = self.mapping.to_item(row, fallback_id=fallback, ref={})
        value = row.get(self.cursor_column)
        if value is None:
            problem = item.problem or f"{self.cursor_column} is NULL; every row needs a cursor value"
            return dataclasses.replace(item, cursor=None, problem=problem, ref={"raw": jsonable(row)})
        cursor: CursorValue
        if kind == "time":
            if isinstance(value, date | datetime):
                cursor = isoformat_z(coerce_utc(value, zone=self.zone))
            else:
                cursor = str(value)
        elif kind == "int":
            cursor = int(value)
        elif kind == "float":
            cursor = float(value)
        else:
            cursor = str(value)
        return dataclasses.replace(item, cursor=cursor)

    def fetch(self, item: Item) -> list[SourceRecord]:
        """The row's record, from the values listing read (no second query)."""
        if item.problem is not None:
            raise problem_error(item, f"{self.config.table or 'query'} row")
        return [self.mapping.record(self.config.source, item)]
