"""The object manifest and the quarantine ledger: Parquet tables on the object store.

Each run commits one part file per table, named after the run
(``manifest/part-<run>.parquet``), so re-committing a run rewrites the same
file instead of adding rows.  Readers concatenate the parts and drop duplicate
rows (the same object of the same sample seen by two concurrent runs), keeping
the earliest ingest.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from feature_store.object_store.base import ObjectStore
from rosetta.core.hashing import safe_name
from rosetta.core.timeutil import isoformat_z
from schemas.arrow import manifest_schema, quarantine_schema, record_schema
from schemas.records import ManifestEntry, QuarantineEntry

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_PREFIX = "manifest/"
RECORDS_PREFIX = "records/"
SERIES_PREFIX = "series/"
QUARANTINE_PREFIX = "quarantine/"


def _to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_table(store: ObjectStore, key: str, table: pa.Table) -> str:
    """Write ``table`` as one Parquet object at ``key``; returns its URI."""
    store.write_bytes(key, _to_parquet(table), media_type="application/vnd.apache.parquet")
    return store.uri_for(key)


def read_table(store: ObjectStore, key: str, schema: pa.Schema | None = None) -> pa.Table:
    import pyarrow.parquet as pq

    with store.open(key) as stream:
        return pq.read_table(io.BytesIO(stream.read()), schema=schema)


def manifest_table(entries: Iterable[ManifestEntry]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist([e.as_row() for e in entries], schema=manifest_schema())


def quarantine_table(entries: Iterable[QuarantineEntry]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist([e.as_row() for e in entries], schema=quarantine_schema())


def _read_parts(store: ObjectStore, prefix: str, schema: pa.Schema,
                columns: Sequence[str] | None = None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for key in store.list(prefix):
        if key.endswith(".parquet"):
            with store.open(key) as stream:
                tables.append(pq.read_table(io.BytesIO(stream.read()), columns=columns, schema=schema))
    if not tables:
        wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
        return wanted.empty_table()
    return pa.concat_tables(tables)


class Manifest:
    """Every raw object Rosetta stored, with source, sha256, size, media type and times.

    Partitioned by source (``manifest/source=<source>/part-<run>.parquet``).
    Each part also carries, in its Parquet metadata, the source's connector
    state after that run: data and state are one object, written in one
    atomic put, so they can never disagree.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def prefix(source: str | None = None) -> str:
        return f"{MANIFEST_PREFIX}source={source}/" if source else MANIFEST_PREFIX

    def part_key(self, source: str, run_id: str) -> str:
        return f"{self.prefix(source)}part-{safe_name(run_id)}.parquet"

    def commit(self, source: str, run_id: str, entries: Iterable[ManifestEntry] | pa.Table, *,
               state: dict[str, Any] | None = None, ingest_time: datetime | None = None) -> int:
        """Write this run's rows (and the state they bring the source to) as one part.

        Re-committing a run replaces its part.  A run with no rows and no state
        writes nothing.
        """
        import pyarrow as pa

        table = entries if isinstance(entries, pa.Table) else manifest_table(entries)
        key = self.part_key(source, run_id)
        if not table.num_rows and state is None:
            self.store.delete(key)
            return 0
        metadata = {b"rosetta.run_id": run_id.encode(), b"rosetta.source": source.encode()}
        if state is not None:
            metadata[b"rosetta.state"] = json.dumps(state, sort_keys=True).encode()
        if ingest_time is not None:
            metadata[b"rosetta.ingest_time"] = isoformat_z(ingest_time).encode()
        write_table(self.store, key, table.cast(manifest_schema()).replace_schema_metadata(metadata))
        return int(table.num_rows)

    def read(self, columns: Sequence[str] | None = None, *, source: str | None = None) -> pa.Table:
        """All rows, duplicates across runs removed (earliest ingest kept), sorted by sample and role."""
        import pyarrow.compute as pc

        table = _read_parts(self.store, self.prefix(source), manifest_schema())
        if table.num_rows:
            table = table.sort_by([("ingest_time", "ascending"), ("run_id", "ascending")])
            keys = pc.binary_join_element_wise(table["sample_id"], table["role"], table["sha256"], "\x1f")
            first = _first_occurrence(keys.to_pylist())
            table = table.take(first).sort_by([("sample_id", "ascending"), ("role", "ascending"),
                                               ("ingest_time", "ascending")])
        return table.select(list(columns)) if columns else table

    def known_versions(self, source: str, *, exclude_run_id: str | None = None) -> set[tuple[str, str, str]]:
        """``(source_id, role, sha256)`` of everything committed for ``source``.

        ``exclude_run_id`` leaves out one run's own part, so re-running that run
        rebuilds its result instead of finding its own rows.
        """
        table = _read_parts(self.store, self.prefix(source), manifest_schema(),
                            columns=["source_id", "role", "sha256", "run_id"])
        return {(sid, role, sha) for sid, role, sha, run in zip(
            table["source_id"].to_pylist(), table["role"].to_pylist(), table["sha256"].to_pylist(),
            table["run_id"].to_pylist(), strict=True) if run != exclude_run_id}

    def latest_state(self, source: str, *, exclude_run_id: str | None = None) -> dict[str, Any] | None:
        """The connector state committed by the source's latest run (by ingest time, then run id)."""
        import pyarrow.parquet as pq

        best: tuple[str, str, dict[str, Any]] | None = None
        for key in self.store.list(self.prefix(source)):
            if not key.endswith(".parquet"):
                continue
            with self.store.open(key) as stream:
                meta = pq.read_schema(io.BytesIO(stream.read())).metadata or {}
            run_id = meta.get(b"rosetta.run_id", b"").decode()
            if b"rosetta.state" not in meta or run_id == exclude_run_id:
                continue
            rank = (meta.get(b"rosetta.ingest_time", b"").decode(), run_id)
            if best is None or rank > best[:2]:
                best = (*rank, json.loads(meta[b"rosetta.state"]))
        return best[2] if best else None


class RecordCatalog:
    """One row per ingested record: identity, event time, text, entity keys, metadata, object URIs.

    The record-level view that alignment and training read; partitioned by
    source like the manifest.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def part_key(self, source: str, run_id: str) -> str:
        return f"{RECORDS_PREFIX}source={source}/part-{safe_name(run_id)}.parquet"

    def commit(self, source: str, run_id: str, table: pa.Table) -> int:
        key = self.part_key(source, run_id)
        if not table.num_rows:
            self.store.delete(key)
            return 0
        write_table(self.store, key, table.cast(record_schema()))
        return int(table.num_rows)

    def read(self, *, source: str | None = None) -> pa.Table:
        prefix = f"{RECORDS_PREFIX}source={source}/" if source else RECORDS_PREFIX
        table = _read_parts(self.store, prefix, record_schema())
        return table.sort_by([("sample_id", "ascending"), ("ingest_time", "ascending")])


class QuarantineLedger:
    """Every rejected record with its reason and, where there were bytes, a kept copy."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def part_key(self, source: str, run_id: str) -> str:
        return f"{QUARANTINE_PREFIX}source={source}/part-{safe_name(run_id)}.parquet"

    def commit(self, source: str, run_id: str, entries: Iterable[QuarantineEntry] | pa.Table) -> int:
        import pyarrow as pa

        table = entries if isinstance(entries, pa.Table) else quarantine_table(entries)
        if not table.num_rows:
            self.store.delete(self.part_key(source, run_id))
            return 0
        write_table(self.store, self.part_key(source, run_id), table.cast(quarantine_schema()))
        return int(table.num_rows)

    def read(self) -> pa.Table:
        table = _read_parts(self.store, QUARANTINE_PREFIX, quarantine_schema())
        return table.sort_by([("ingest_time", "ascending"), ("source_id", "ascending")])


def _first_occurrence(keys: list[str]) -> list[int]:
    seen: set[str] = set()
    keep = []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return keep


class SeriesLedger:
    """DICOM series declared complete, once each: ``series/source=<source>/part-<run>.parquet``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def part_key(self, source: str, run_id: str) -> str:
        return f"{SERIES_PREFIX}source={source}/part-{safe_name(run_id)}.parquet"

    def commit(self, source: str, run_id: str, rows: list[dict[str, Any]]) -> int:
        """Write this run's completions (replacing the run's earlier attempt); returns the row count."""
        import pyarrow as pa

        from schemas.arrow import series_schema

        key = self.part_key(source, run_id)
        if not rows:
            self.store.delete(key)
            return 0
        write_table(self.store, key, pa.Table.from_pylist([{**r, "run_id": run_id} for r in rows],
                                                          schema=series_schema()))
        return len(rows)

    def read(self, *, source: str | None = None, exclude_run_id: str | None = None) -> pa.Table:
        from schemas.arrow import series_schema

        prefix = f"{SERIES_PREFIX}source={source}/" if source else SERIES_PREFIX
        table = _read_parts(self.store, prefix, series_schema())
        if exclude_run_id is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.not_equal(table["run_id"], exclude_run_id))
        return table.sort_by([("completed_at", "ascending"), ("series_uid", "ascending")])
