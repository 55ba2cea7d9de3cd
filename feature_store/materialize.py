"""Materialize an embedding view from the offline store into its Qdrant version collection, in time chunks.

``materialize(view, keys, offline, collections, object_store, start=..., end=...)`` walks
``[start, end)`` in chunks (a day by default), in time order.  For each chunk it reads the offline rows
with an event time in the chunk, keeps each entity's latest value (event time, then ingest time), and
upserts it into the view version's collection (deterministic point ids: a repeat replaces).  After each
chunk it records how far it got (``registry/materialized/<view>@<version>.json`` in the object store):

- **resumable**: a run that stopped (killed, failed) continues after the last finished chunk;
- **idempotent**: a range already materialized is skipped; ``force=True`` redoes it from ``start``, in
  time order, so the collection ends the same;
- chunks are applied in time order, so a later value always overwrites an earlier one.

A range covers the values whose *event time* falls in it (as Feast's ``materialize``), so a row that
arrives late for a range already done is not picked up by the range: the pipeline's runs therefore call
:func:`materialize_entities` for the entities they wrote, which re-reads each one's whole history and
upserts its latest value, right in whatever order rows arrive (late, backfilled, re-run).

The collection is created if needed; publishing it (the alias swap) stays a separate, deliberate step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from feature_store.object_store import ObjectStore
    from feature_store.offline import OfflineStore
    from feature_store.vector_store.versions import ViewCollections
    from schemas.features import FeatureView


def checkpoint_key(view: FeatureView) -> str:
    return f"registry/materialized/{view.versioned_name}.json"


def materialized_until(store: ObjectStore, view: FeatureView) -> datetime | None:
    """The end of the last chunk materialized for this view version, None if none."""
    key = checkpoint_key(view)
    if not store.exists(key):
        return None
    return datetime.fromisoformat(json.loads(store.read_bytes(key))["until"])


def materialize(view: FeatureView, keys: list[str], offline: OfflineStore, collections: ViewCollections,
                store: ObjectStore, *, start: datetime, end: datetime, chunk: timedelta = timedelta(days=1),
                force: bool = False) -> dict[str, Any]:
    """Upsert ``view``'s latest value per entity for every chunk of ``[start, end)``; returns what was done."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ConfigError("materialize needs timezone-aware start and end", setting="start")
    if chunk <= timedelta(0) or end <= start:
        raise ConfigError("materialize needs start < end and a positive chunk", setting="chunk")
    _one_key(view, keys)
    done = None if force else materialized_until(store, view)
    cursor = max(start, done) if done is not None else start
    collections.create(view, entity_keys=keys)
    chunks = points = 0
    while cursor < end:
        stop = min(cursor + chunk, end)
        points += _upsert_latest(view, keys, offline.read(view, keys, start=cursor, end=stop), collections)
        store.write_bytes(checkpoint_key(view), json.dumps({"until": stop.astimezone(UTC).isoformat(),
                                                            "at": datetime.now(UTC).isoformat()}).encode(),
                          media_type="application/json")
        chunks += 1
        cursor = stop
    return {"chunks": chunks, "points": points, "from": (max(start, done) if done else start).isoformat(),
            "until": end.isoformat(), "skipped": done is not None and done >= end}


def materialize_entities(view: FeatureView, keys: list[str], offline: OfflineStore, collections: ViewCollections,
                         values: Sequence[str]) -> int:
    """Bring the online values of these entities up to date: each one's latest offline value over all time
    (event time, then ingest time) is upserted.  What an incremental run calls for the entities it wrote:
    unlike a time range, it is right whatever order late or backfilled rows arrive in.  Returns the points."""
    _one_key(view, keys)
    wanted = sorted({str(v) for v in values if v is not None})
    if not wanted:
        return 0
    collections.create(view, entity_keys=keys)
    return _upsert_latest(view, keys, offline.read(view, keys, entities={keys[0]: wanted}), collections)


def _one_key(view: FeatureView, keys: list[str]) -> None:
    if len(keys) != 1:
        raise ConfigError(f"view {view.name!r} joins on {keys}; materializing needs one entity key", setting="keys")


def _upsert_latest(view: FeatureView, keys: list[str], table: pa.Table, collections: ViewCollections) -> int:
    """Upsert each entity's latest row of ``table`` (event time, then ingest time); the points written."""
    import pyarrow.compute as pc

    from feature_store.offline import EMBEDDING, EVENT_TIME, INGEST_TIME
    from feature_store.vector_store.versions import ViewPoint

    if not table.num_rows:
        return 0
    order = pc.sort_indices(table, sort_keys=[(keys[0], "ascending"), (EVENT_TIME, "descending"),
                                              (INGEST_TIME, "descending")])
    table = table.take(order)
    key_values = table.column(keys[0]).to_pylist()
    first = [i for i, k in enumerate(key_values) if k is not None and (i == 0 or key_values[i - 1] != k)]
    latest = table.take(first)
    return collections.upsert(view, (
        ViewPoint(key=str(k), vector=v, payload={keys[0]: str(k), "source": view.source, "modality": view.modality,
                                                 "event_time": e.isoformat(), "ingest_time": i.isoformat()})
        for k, v, e, i in zip(latest.column(keys[0]).to_pylist(), latest.column(EMBEDDING).to_pylist(),
                              latest.column(EVENT_TIME).to_pylist(), latest.column(INGEST_TIME).to_pylist(),
                              strict=True)
        if v is not None))
