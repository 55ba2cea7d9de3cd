"""The feature values of one ingestion run: offline rows for every registered view of its source, then online.

After a run commits, :func:`write_run_features` takes the views the registry holds for the run's source
(``rosetta features apply`` puts them there; a source without views is left alone) and, for each:

- **embedding views**: the run's staged vectors of the view's modality that the view's encoder made (same
  weights sha256, same precision; vectors from another encoder belong to another view version and are left
  out, with the reason in the result), keyed by the view's join keys from the record's entity keys;
- **metadata views**: each feature from the record: a record column (``text``, ``event_time_origin``,
  ``source_id``...), else its ``metadata``, else its entity ``keys``, else ``<role>_<field>`` of one of its
  objects (``image_media_type``, ``image_sha256``...); absent values are null.

are written to the offline store as the run's part (``part-<run>.parquet``: re-running replaces it), with
the record's event time and the run's ingest time.  Embedding views are then brought online: the entities
the run wrote get their latest offline value upserted into the view version's Qdrant collection
(:func:`feature_store.materialize.materialize_entities`), and a version that nothing serves yet is
published behind the view's alias.  A version built beside a live one (a new encoder) is left for
``rosetta features publish`` to swap in, once it holds what it should.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from feature_store.manifest import read_table

if TYPE_CHECKING:
    import pyarrow as pa

    from feature_store.config import FeatureStoreConfig
    from feature_store.object_store import ObjectStore
    from schemas.features import FeatureView

log = logging.getLogger(__name__)


def write_run_features(store: ObjectStore, config: FeatureStoreConfig, source: str, run_id: str,
                       ingest_time: datetime, records_uris: Iterable[str], embeddings_uris: Iterable[str], *,
                       embeddings_policy: str = "block") -> dict[str, Any]:
    """Offline and online values of the run's records for every view of ``source``; what was done per view.

    Each embedding view's values pass the embeddings quality gate first (dimension, finite, unit length;
    :func:`transforms.quality.gates.embeddings_gate`); ``embeddings_policy`` ``block`` stops before anything of
    the view is written, ``warn`` records the failure in the result."""
    from feature_store.offline import OfflineStore, join_keys
    from feature_store.registry import Registry
    from schemas.arrow import embedding_schema, record_schema

    every_view, every_entity = Registry(store).resolve()
    views = [v for v in every_view if v.source == source]
    if not views:
        return {"views": {}, "note": f"no feature views registered for source {source!r}"}
    entities = {e.name: tuple(e.join_keys) for e in every_entity}
    records = [row for uri in records_uris for row in
               read_table(store, store.key_for(uri), record_schema()).to_pylist()]
    embeddings = [row for uri in embeddings_uris for row in
                  read_table(store, store.key_for(uri), embedding_schema()).to_pylist()]
    offline = OfflineStore.from_config(config.object_store)
    done: dict[str, Any] = {}
    collections = None
    try:
        for view in views:
            keys = join_keys(view, entities)
            if view.kind == "embedding":
                table, skipped = _embedding_table(view, keys, embeddings)
            elif view.kind == "metadata":
                table, skipped = _metadata_table(view, keys, records)
            else:
                done[view.versioned_name] = {"offline_rows": 0, "note": f"{view.kind} views are written by their "
                                             "own stage, not by ingestion"}
                continue
            entry: dict[str, Any] = {"skipped": skipped}
            if view.kind == "embedding" and table.num_rows:
                import pyarrow

                from feature_store.offline import EMBEDDING
                from rosetta.pipelines.quality import record_gate
                from transforms.quality.gates import embeddings_gate

                assert view.dimension is not None
                vectors = table.column(EMBEDDING).to_pylist()
                gate = embeddings_gate([str(v) for v in table.column(keys[0]).to_pylist()], vectors,
                                       dimension=view.dimension, policy="warn")
                entry["gate"] = record_gate(store, source, run_id, f"embeddings/{view.versioned_name}", gate,
                                            embeddings_policy)
                fits = [len(v) == view.dimension for v in vectors]
                skipped["wrong_dimension"] = len(fits) - sum(fits)
                table = table.filter(pyarrow.array(fits, pyarrow.bool_()))  # warn: only storable vectors go on
            rows = offline.write(view, keys, table, run_id, ingest_time=ingest_time) if table.num_rows else 0
            entry = {"offline_rows": rows, **entry}
            if view.kind == "embedding" and rows:
                from feature_store.materialize import materialize_entities
                from feature_store.vector_store.versions import open_view_collections

                collections = collections or open_view_collections(config.vector_store)
                entry["online_points"] = materialize_entities(view, keys, offline, collections,
                                                              table.column(keys[0]).to_pylist())
                if collections.live(view.name) is None:
                    collections.publish(view)
                entry["live"] = collections.live(view.name)
            done[view.versioned_name] = entry
            log.info("feature view %s: %s", view.versioned_name, entry)
    finally:
        if collections is not None:
            collections.close()
    return {"views": done}


def _key_values(keys: Sequence[str], sample_id: str, entity_keys: dict[str, Any]) -> dict[str, str] | None:
    values = {}
    for key in keys:
        value = sample_id if key == "sample_id" else entity_keys.get(key)
        if value is None:
            return None
        values[key] = str(value)
    return values


def _embedding_table(view: FeatureView, keys: Sequence[str], embeddings: list[dict[str, Any]]) -> tuple[pa.Table,
                                                                                                      dict[str, int]]:
    import pyarrow as pa

    from feature_store.offline import EMBEDDING, EVENT_TIME

    assert view.encoder is not None and view.dimension is not None
    columns: dict[str, list[Any]] = {key: [] for key in (*keys, EVENT_TIME, EMBEDDING)}
    skipped = {"other_encoder": 0, "no_entity_key": 0}
    for row in embeddings:
        if row["modality"] != view.modality:
            continue
        if not view.encoder.made(json.loads(row["encoder"])):
            skipped["other_encoder"] += 1
            continue
        payload = json.loads(row["payload"])
        values = _key_values(keys, row["sample_id"], payload.get("keys") or {})
        if values is None:
            skipped["no_entity_key"] += 1
            continue
        for key, value in values.items():
            columns[key].append(value)
        columns[EVENT_TIME].append(row["event_time"])
        columns[EMBEDDING].append(row["vector"])
    if skipped["other_encoder"]:
        log.warning("view %s: %d vector(s) of this run were made by another encoder than the view's (%s@%s%s); "
                    "define a view version for that encoder to keep them", view.name, skipped["other_encoder"],
                    view.encoder.name, (view.encoder.revision or "")[:12],
                    f"+{view.encoder.precision}" if view.encoder.precision else "")
    return pa.table({**{k: pa.array(columns[k], pa.string()) for k in keys},
                     EVENT_TIME: pa.array(columns[EVENT_TIME], pa.timestamp("us", tz="UTC")),
                     EMBEDDING: pa.array(columns[EMBEDDING], pa.list_(pa.float32()))}), skipped


def _feature_value(name: str, record: dict[str, Any], metadata: dict[str, Any], entity_keys: dict[str, Any],
                   objects: dict[str, Any]) -> Any:
    if name in record and name not in ("keys", "metadata", "objects"):
        return record[name]
    if name in metadata:
        return metadata[name]
    if name in entity_keys:
        return entity_keys[name]
    role, _, attribute = name.partition("_")
    return (objects.get(role) or {}).get(attribute) if attribute else None


def _metadata_table(view: FeatureView, keys: Sequence[str], records: list[dict[str, Any]]) -> tuple[pa.Table,
                                                                                                  dict[str, int]]:
    import pyarrow as pa

    from feature_store.offline import EVENT_TIME

    rows: list[dict[str, Any]] = []
    skipped = {"no_entity_key": 0}
    for record in records:
        entity_keys, metadata = json.loads(record["keys"]), json.loads(record["metadata"])
        values = _key_values(keys, record["sample_id"], entity_keys)
        if values is None:
            skipped["no_entity_key"] += 1
            continue
        objects = json.loads(record["objects"])
        rows.append({**values, EVENT_TIME: record["event_time"],
                     **{f.name: _feature_value(f.name, record, metadata, entity_keys, objects)
                        for f in view.features}})
    if not rows:
        return pa.table({**{k: pa.array([], pa.string()) for k in keys},
                         EVENT_TIME: pa.array([], pa.timestamp("us", tz="UTC"))}), skipped
    return pa.Table.from_pylist(rows), skipped
