"""The object manifest and the quarantine ledger: Parquet tables on the object store.

Each run commits one part file per table, named after the run
(``manifest/part-<run>.parquet``), so re-committing a run rewrites the same
file instead of adding rows.  Readers concatenate the parts and drop duplicate
rows (the same object of the same sample seen by two concurrent runs), keeping
the earliest ingest.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from feature_store.object_store.base import ObjectStore
from rosetta.core.hashing import safe_name
from schemas.arrow import manifest_schema, quarantine_schema
from schemas.records import ManifestEntry, QuarantineEntry

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST_PREFIX = "manifest/"
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
    """Every raw object Rosetta stored, with source, sha256, size, media type and times."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def part_key(self, run_id: str) -> str:
        return f"{MANIFEST_PREFIX}part-{safe_name(run_id)}.parquet"

    def commit(self, run_id: str, entries: Iterable[ManifestEntry] | pa.Table) -> int:
        """Write this run's rows as one part (replacing an earlier commit of the run)."""
        import pyarrow as pa

        table = entries if isinstance(entries, pa.Table) else manifest_table(entries)
        if not table.num_rows:
            self.store.delete(self.part_key(run_id))
            return 0
        write_table(self.store, self.part_key(run_id), table.cast(manifest_schema()))
        return int(table.num_rows)

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows, duplicates across runs removed (earliest ingest kept), sorted by sample and role."""
        import pyarrow.compute as pc

        table = _read_parts(self.store, MANIFEST_PREFIX, manifest_schema())
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
        table = _read_parts(self.store, MANIFEST_PREFIX, manifest_schema(),
                            columns=["source", "source_id", "role", "sha256", "run_id"])
        return {(sid, role, sha) for src, sid, role, sha, run in zip(
            table["source"].to_pylist(), table["source_id"].to_pylist(), table["role"].to_pylist(),
            table["sha256"].to_pylist(), table["run_id"].to_pylist(), strict=True)
            if src == source and run != exclude_run_id}


class QuarantineLedger:
    """Every rejected record with its reason and, where there were bytes, a kept copy."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def part_key(self, run_id: str) -> str:
        return f"{QUARANTINE_PREFIX}part-{safe_name(run_id)}.parquet"

    def commit(self, run_id: str, entries: Iterable[QuarantineEntry] | pa.Table) -> int:
        import pyarrow as pa

        table = entries if isinstance(entries, pa.Table) else quarantine_table(entries)
        if not table.num_rows:
            self.store.delete(self.part_key(run_id))
            return 0
        write_table(self.store, self.part_key(run_id), table.cast(quarantine_schema()))
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
