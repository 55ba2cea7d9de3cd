"""Any connector -> raw objects -> embeddings -> Qdrant -> manifest.

Steps (each idempotent, each returning URIs and counts for XCom):

1. :meth:`IngestPipeline.check` - fail fast on a wrong endpoint, credentials, model path or source.
2. :meth:`IngestPipeline.plan` - list what is new since the committed state (or what is in the
   backfill window), split it into batches, write each batch's item list.
3. :meth:`IngestPipeline.store_batch` - fetch each item's records; store their objects
   content-addressed; skip records whose objects are all known; quarantine bad ones.
4. :meth:`IngestPipeline.embed_batch` - encode the batch's new records (image objects and text).
5. :meth:`IngestPipeline.write_vectors` - upsert every staged vector into Qdrant (one writer per run,
   so Qdrant's single-process local mode works under any executor).
6. :meth:`IngestPipeline.commit` - write the run's manifest part with the new connector state in
   it (one atomic object), the record catalog and quarantine parts, then the run summary.
7. :meth:`IngestPipeline.write_features` - the run's values of the source's registered feature views,
   offline (Parquet) and, for embedding views, online (the view version's Qdrant collection).

The manifest and the state are committed last, together: a run that dies before that is redone
by the next one with idempotent writes, so there are no gaps and no duplicates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connectors.sdk import Connector, Item, State, Window, load_connector
from feature_store.ids import point_id
from feature_store.manifest import (
    Manifest,
    QuarantineLedger,
    RecordCatalog,
    SeriesLedger,
    manifest_table,
    quarantine_table,
    read_table,
    write_table,
)
from feature_store.object_store import ObjectStore, open_object_store
from feature_store.vector_store import QdrantVectorStore, VectorPoint
from rosetta.core.errors import BadRecordError
from rosetta.core.hashing import safe_name, sha256_bytes
from rosetta.core.timeutil import ensure_utc, isoformat_z
from rosetta.pipelines.settings import DICOM_CONNECTORS, MAX_BATCHES, IngestSettings
from schemas.arrow import manifest_schema, quarantine_schema, record_schema
from schemas.records import EncoderIdentity, ManifestEntry, ObjectRef, QuarantineEntry, SourceRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from transforms.encoders.base import ImageEncoder, TextEncoder

log = logging.getLogger(__name__)

STAGE_STORE = "store"
STAGE_EMBED = "embed"
IMAGE_ROLE = "image"


@dataclass(frozen=True, slots=True)
class RunContext:
    """Identity of one run.

    ``ingest_time`` is the run's data interval end (UTC), never ``now()``.  A
    ``window`` makes the run a bounded backfill: it lists what the window
    holds, ignores and does not move the incremental state.  ``retry_failed``
    makes it a retry of the source's failed items only (see :meth:`IngestPipeline.plan`),
    which does not move the state either.
    """

    run_id: str
    ingest_time: datetime
    window: Window = field(default_factory=Window)
    retry_failed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ingest_time", ensure_utc(self.ingest_time, name="ingest_time"))

    @property
    def key(self) -> str:
        return safe_name(self.run_id)

    @property
    def backfill(self) -> bool:
        return self.window.bounded

    @property
    def moves_state(self) -> bool:
        """Whether committing this run advances the source's incremental state (not backfills, not retries)."""
        return not self.backfill and not self.retry_failed

    def staging(self, *parts: str) -> str:
        return "/".join(("staging", self.key, *parts))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return ensure_utc(value).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _write_json(store: ObjectStore, key: str, data: Any) -> str:
    store.write_bytes(key, json.dumps(data, sort_keys=True, default=_json_default).encode(),
                      media_type="application/json")
    return store.uri_for(key)


def _read_json(store: ObjectStore, uri: str) -> Any:
    return json.loads(store.read_bytes(store.key_for(uri)))


@dataclass
class _ItemOutcome:
    entries: list[ManifestEntry] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    unchanged: int = 0
    objects_written: int = 0
    bytes_written: int = 0


class IngestPipeline:
    """The steps of one source's ingestion, sharing lazily built clients and models.

    An Airflow task builds one per call; a benchmark or a long-lived worker can
    reuse one across batches.  Use it as a context manager to release clients.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> ObjectStore:
        return open_object_store(self.settings.feature_store.object_store)

    @cached_property
    def connector(self) -> Connector[Any]:
        return load_connector(self.settings.connector, self.settings.options,
                              where=f"source {self.settings.options.get('source')!r} options")

    @property
    def source(self) -> str:
        return str(self.connector.source)

    @cached_property
    def image_encoder(self) -> ImageEncoder:
        from transforms.encoders import load_image_encoder

        return load_image_encoder(self.settings.image_encoder)

    @cached_property
    def text_encoder(self) -> TextEncoder:
        from transforms.encoders import load_text_encoder

        return load_text_encoder(self.settings.text_encoder)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
        if "connector" in self.__dict__:
            self.connector.close()

    def __enter__(self) -> IngestPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- 1. check --------------------------------------------------------------------------------
    def check(self) -> dict[str, str]:
        """Reach every configured service and path; raise ConfigError naming the setting if one is wrong."""
        from transforms.encoders.config import check_encoder_paths

        settings = self.settings
        self.connector.check()
        self.store.check()
        check_encoder_paths(settings.text_encoder, settings.image_encoder)
        with QdrantVectorStore(settings.feature_store.vector_store) as vectors:
            vectors.check()
        return {"source": self.source, "connector": settings.connector, "object_store": self.store.root_uri,
                "vector_store": settings.feature_store.vector_store.location}

    # -- 2. plan ---------------------------------------------------------------------------------
    def state(self, run: RunContext) -> State:
        """The committed state this run starts from (empty for a backfill)."""
        if run.backfill:
            return State()
        return State.from_json(Manifest(self.store).latest_state(self.source, exclude_run_id=run.run_id))

    def failed_items(self) -> dict[str, str]:
        """Source id -> reason of every item of the source whose latest outcome is a failure: its latest run put it
        in the quarantine ledger (at any stage), and no later run committed it without quarantining it."""
        import pyarrow.compute as pc

        ledger = QuarantineLedger(self.store).read()
        ledger = ledger.filter(pc.equal(ledger.column("source"), self.source))
        outcomes: dict[str, tuple[Any, str | None]] = {}  # source id -> (when, reason; None: committed fine)
        failed_in_run = set()
        for source_id, when, reason, run_id in zip(*(ledger.column(c).to_pylist() for c in (
                "source_id", "ingest_time", "reason", "run_id")), strict=True):
            failed_in_run.add((source_id, run_id))
            if source_id not in outcomes or when >= outcomes[source_id][0]:
                outcomes[source_id] = (when, reason)
        records = RecordCatalog(self.store).read(source=self.source)
        for source_id, when, run_id in zip(*(records.column(c).to_pylist() for c in (
                "source_id", "ingest_time", "run_id")), strict=True):
            if source_id in outcomes and (source_id, run_id) not in failed_in_run and when > outcomes[source_id][0]:
                outcomes[source_id] = (when, None)
        return {source_id: reason for source_id, (_, reason) in outcomes.items() if reason is not None}

    def plan(self, run: RunContext) -> list[dict[str, Any]]:
        """Split what is new into at most MAX_BATCHES batches; one small JSON file per batch.

        A ``retry_failed`` run lists the whole source and keeps only the items that failed last time
        (:meth:`failed_items`): the fix was made at the source or in Rosetta, and only those are redone."""
        if run.retry_failed:
            failed = self.failed_items()
            items = [i for i in self.connector.list_items(State(), Window()) if i.source_id in failed]
            log.info("retrying %d of %d failed items of %s (the others are gone from the source)", len(items),
                     len(failed), self.source)
        else:
            items = list(self.connector.list_items(self.state(run), run.window))
        size = max(self.settings.batch_size, -(-len(items) // MAX_BATCHES))
        batches = []
        for index, start in enumerate(range(0, len(items), size)):
            chunk = items[start:start + size]
            uri = _write_json(self.store, run.staging("plan", f"batch-{index:05d}.json"),
                              [item.to_json() for item in chunk])
            batches.append({"batch": index, "plan_uri": uri, "items": len(chunk),
                            "label": f"batch {index}: {chunk[0].source_id} .. {chunk[-1].source_id}"})
        log.info("planned %d new items of %s in %d batches", len(items), self.source, len(batches))
        return batches

    # -- 3. store --------------------------------------------------------------------------------
    def store_batch(self, run: RunContext, batch: dict[str, Any], *,
                    known: set[tuple[str, str, str]] | None = None) -> dict[str, Any]:
        """Fetch and store the batch's records; quarantine bad ones.

        A record whose objects are all in the manifest already (same source id,
        role and sha256) is skipped; this run's own earlier commit is ignored so
        re-running a run rebuilds the same result.
        """
        store, connector = self.store, self.connector
        items = [Item.from_json(d) for d in _read_json(store, batch["plan_uri"])]
        if run.retry_failed:  # a retried item's objects may be stored already (it failed after): redo it whole
            known = set()
        if known is None:
            known = Manifest(store).known_versions(self.source, exclude_run_id=run.run_id)

        def one(item: Item) -> _ItemOutcome:
            outcome = _ItemOutcome()
            try:
                records = list(connector.fetch(item))
            except BadRecordError as bad:
                outcome.quarantine.append(self._quarantine(run, bad.source_id or item.source_id, bad))
                return outcome
            for record in records:
                digests = {o.role: sha256_bytes(o.data) for o in record.objects}
                if digests and all((record.source_id, role, sha) in known for role, sha in digests.items()):
                    outcome.unchanged += 1
                    continue
                self._store_record(run, record, digests, outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="rosetta-store") as pool:
            outcomes = list(pool.map(one, items))
        entries = [e for o in outcomes for e in o.entries]
        records = [r for o in outcomes for r in o.records]
        quarantined = [q for o in outcomes for q in o.quarantine]
        stem = run.staging("stored", f"batch-{batch['batch']:05d}")
        result = {
            "batch": batch["batch"], "items": len(items),
            "staged_uri": write_table(store, f"{stem}.manifest.parquet", manifest_table(entries)),
            "records_uri": write_table(store, f"{stem}.records.parquet", _records_table(records)),
            "quarantine_uri": write_table(store, f"{stem}.quarantine.parquet", quarantine_table(quarantined)),
            "new_records": len(records),
            "unchanged": sum(o.unchanged for o in outcomes),
            "quarantined": len(quarantined),
            "objects_written": sum(o.objects_written for o in outcomes),
            "bytes_written": sum(o.bytes_written for o in outcomes),
        }
        log.info("batch %s: %s", batch["batch"], {k: v for k, v in result.items() if not k.endswith("_uri")})
        return result

    def _store_record(self, run: RunContext, record: SourceRecord, digests: dict[str, str],
                      outcome: _ItemOutcome) -> None:
        event_time = ensure_utc(record.event_time, name=f"event_time of {record.sample_id}")
        objects: dict[str, dict[str, str]] = {}
        for obj in record.objects:
            ref = self.store.put(obj.data, media_type=obj.media_type, sha256=digests.get(obj.role))
            if ref.created:
                outcome.objects_written += 1
                outcome.bytes_written += ref.size_bytes
            objects[obj.role] = {"uri": ref.uri, "sha256": ref.sha256, "media_type": obj.media_type}
            outcome.entries.append(ManifestEntry(
                sample_id=record.sample_id, source=record.source, source_id=record.source_id, role=obj.role,
                key=ref.key, uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size_bytes, media_type=obj.media_type,
                event_time=event_time, ingest_time=run.ingest_time, run_id=run.run_id))
        outcome.records.append({
            "sample_id": record.sample_id, "source": record.source, "source_id": record.source_id,
            "event_time": event_time, "event_time_origin": record.event_time_origin, "text": record.text,
            "keys": json.dumps(dict(record.keys), sort_keys=True),
            "metadata": json.dumps(dict(record.metadata), sort_keys=True, default=_json_default),
            "objects": json.dumps(objects, sort_keys=True), "ingest_time": run.ingest_time, "run_id": run.run_id})

    def _quarantine(self, run: RunContext, source_id: str, bad: BadRecordError, stage: str = STAGE_STORE,
                    ref: ObjectRef | None = None) -> QuarantineEntry:
        """A quarantine record; the bad bytes are kept in the object store (``ref`` if already stored)."""
        if ref is None and bad.payload:
            ref = self.store.put(bad.payload)
        log.warning("quarantined %s at %s: %s", source_id, stage, bad.reason)
        return QuarantineEntry(source=self.source, source_id=source_id, reason=bad.reason, stage=stage,
                               uri=ref.uri if ref else None, sha256=ref.sha256 if ref else None,
                               size_bytes=ref.size_bytes if ref else None, ingest_time=run.ingest_time,
                               run_id=run.run_id)

    # -- 4. embed --------------------------------------------------------------------------------
    def embed_batch(self, run: RunContext, stored: dict[str, Any]) -> dict[str, Any]:
        """Encode the batch's new records: image objects with the image encoder, text with the text encoder.

        Images are decoded a chunk at a time; one that fails to decode is
        quarantined (stage ``embed``) and the rest go on.  Loads no model when
        the batch has nothing new.
        """
        if not stored["new_records"]:
            return {"batch": stored["batch"], "embeddings_uri": None, "points": 0, "quarantined": 0}
        store = self.store
        records = read_table(store, store.key_for(stored["records_uri"]), record_schema()).to_pylist()
        rows: list[dict[str, Any]] = []
        quarantined: list[QuarantineEntry] = []
        with_image = [r for r in records if IMAGE_ROLE in json.loads(r["objects"])]
        if with_image:
            rows += self._embed_images(run, with_image, quarantined)
        rejected = {q.source_id for q in quarantined}  # a record quarantined here gets no vector at all
        with_text = [r for r in records if r["text"] and r["source_id"] not in rejected]
        if with_text:
            encoder = self.text_encoder
            vectors = encoder.encode([r["text"] for r in with_text])
            rows += [_embedding_row(r, "text", v.tolist(), encoder.identity) for r, v in zip(with_text, vectors,
                                                                                           strict=True)]
        quarantine_key = run.staging("embed-quarantine", f"batch-{stored['batch']:05d}.parquet")
        if quarantined:
            write_table(store, quarantine_key, quarantine_table(quarantined))
        else:
            store.delete(quarantine_key)
        uri = (_write_embeddings(store, run.staging("embeddings", f"batch-{stored['batch']:05d}.parquet"), rows)
               if rows else None)
        return {"batch": stored["batch"], "embeddings_uri": uri, "points": len(rows), "quarantined": len(quarantined)}

    def _embed_images(self, run: RunContext, records: list[dict[str, Any]],
                      quarantined: list[QuarantineEntry]) -> list[dict[str, Any]]:
        from transforms.encoders.image import to_rgb_image

        encoder, store, rows = self.image_encoder, self.store, []
        chunk_size = max(1, self.settings.image_encoder.batch_size * 4)
        for start in range(0, len(records), chunk_size):
            good, pictures = [], []
            for record in records[start:start + chunk_size]:
                image = json.loads(record["objects"])[IMAGE_ROLE]
                data = store.read_bytes(store.key_for(image["uri"]))
                try:
                    picture = to_rgb_image(data)
                    picture.load()
                except Exception as exc:
                    bad = BadRecordError(f"{image['uri']}: the image encoder cannot decode it ({type(exc).__name__}: "
                                         f"{exc}); re-export the file", source_id=record["source_id"])
                    ref = ObjectRef(key=store.key_for(image["uri"]), uri=image["uri"], sha256=image["sha256"],
                                    size_bytes=len(data), media_type=image["media_type"])
                    quarantined.append(self._quarantine(run, record["source_id"], bad, stage=STAGE_EMBED, ref=ref))
                    continue
                good.append(record)
                pictures.append(picture)
            if good:
                vectors = encoder.encode(pictures)
                rows += [_embedding_row(r, "image", v.tolist(), encoder.identity)
                         for r, v in zip(good, vectors, strict=True)]
        return rows

    # -- 5. vectors ------------------------------------------------------------------------------
    def write_vectors(self, run: RunContext, embedded: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Upsert every staged vector of the run into Qdrant (deterministic IDs: re-runs add nothing)."""
        store = self.store
        config = self.settings.feature_store.vector_store
        uris = [e["embeddings_uri"] for e in embedded if e.get("embeddings_uri")]
        points = [VectorPoint(point_id=row["point_id"], modality=row["modality"], vector=row["vector"],
                              payload=json.loads(row["payload"]))
                  for uri in uris for row in read_table(store, store.key_for(uri)).to_pylist()]
        with QdrantVectorStore(config) as vectors:
            if not points:
                return {"points_written": 0, "points_added": 0, "points_total": vectors.count()}
            dims: dict[str, int] = {}
            for point in points:
                dims[point.modality] = len(point.vector)
            vectors.ensure_collection(dims)
            before = vectors.count()
            written = vectors.upsert(points)
            after = vectors.count()
        return {"points_written": written, "points_added": after - before, "points_total": after,
                "collection": config.collection}

    # -- 6. commit -------------------------------------------------------------------------------
    def commit(self, run: RunContext, stored: Sequence[dict[str, Any]], vectors: dict[str, Any], *,
               plans: Sequence[dict[str, Any]] = (), run_after: datetime | None = None) -> dict[str, Any]:
        """Commit manifest + state (one object), records and quarantine; write and return the run summary.

        ``plans`` are :meth:`plan`'s batches: the state advances over every
        planned item (stored, unchanged or quarantined alike).  A backfill run
        does not move the state.
        """
        store, source = self.store, self.source
        batches = sorted(stored, key=lambda b: b["batch"])
        entries = _concat(manifest_schema(), [read_table(store, store.key_for(b["staged_uri"]), manifest_schema())
                                              for b in batches])
        records = _concat(record_schema(), [read_table(store, store.key_for(b["records_uri"]), record_schema())
                                            for b in batches])
        quarantine_keys = [store.key_for(b["quarantine_uri"]) for b in batches]
        quarantine_keys += list(store.list(run.staging("embed-quarantine") + "/"))
        quarantined = _concat(quarantine_schema(), [read_table(store, k, quarantine_schema())
                                                    for k in quarantine_keys])
        from rosetta.pipelines.quality import record_gate

        gates: dict[str, Any] = {}
        if entries.num_rows:
            from transforms.quality.gates import manifest_gate

            gates["raw_manifest"] = record_gate(store, source, run.key, "raw_manifest", manifest_gate(entries,
                                                policy="warn"), self.settings.gates.raw_manifest)
        if records.num_rows and self.settings.connector in DICOM_CONNECTORS:
            from transforms.quality.gates import dicom_metadata_gate

            gates["dicom_metadata"] = record_gate(store, source, run.key, "dicom_metadata", dicom_metadata_gate(
                records, policy="warn"), self.settings.gates.dicom_metadata)
        state: dict[str, Any] | None = None
        if run.moves_state:
            before = self.state(run)
            planned = [Item.from_json(d) for plan in plans for d in _read_json(store, plan["plan_uri"])]
            after = before.advance(planned)
            state = after.to_json() if after != before or entries.num_rows else None
        manifest_rows = Manifest(store).commit(source, run.run_id, entries, state=state, ingest_time=run.ingest_time)
        RecordCatalog(store).commit(source, run.run_id, records)
        quarantine_rows = QuarantineLedger(store).commit(source, run.run_id, quarantined)
        reasons = quarantined.select(["source_id", "reason", "stage"]).slice(0, 50).to_pylist()
        summary = {
            "run_id": run.run_id, "source": source, "connector": self.settings.connector,
            "ingest_time": isoformat_z(run.ingest_time), "run_after": isoformat_z(run_after or run.ingest_time),
            "backfill": run.backfill, "retry_failed": run.retry_failed, "items": sum(b["items"] for b in stored),
            "new_records": sum(b["new_records"] for b in stored),
            "unchanged_records": sum(b["unchanged"] for b in stored),
            "quarantined": quarantine_rows,
            "objects_written": sum(b["objects_written"] for b in stored),
            "bytes_written": sum(b["bytes_written"] for b in stored),
            "manifest_rows": manifest_rows, "state": state,
            "points_written": vectors.get("points_written", 0),
            "points_added": vectors.get("points_added", 0),
            "points_total": vectors.get("points_total", 0),
            "object_store": store.root_uri, "vector_store": self.settings.feature_store.vector_store.location,
            "quarantine_reasons": reasons, "gates": gates,
        }
        summary["summary_uri"] = _write_json(store, f"runs/{safe_name(source)}/{run.key}.json", summary)
        log.info("run summary: %s", {k: v for k, v in summary.items() if k != "quarantine_reasons"})
        return summary


    # -- 7. feature values ---------------------------------------------------------------------------
    def write_features(self, run: RunContext, stored: Sequence[dict[str, Any]],
                       embedded: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Offline values of the run's records for every registered view of the source, and the embedding
        views' entities brought online (see :mod:`rosetta.pipelines.features`).  Re-running replaces."""
        from rosetta.pipelines.features import write_run_features

        return write_run_features(self.store, self.settings.feature_store, self.source, run.key, run.ingest_time,
                                  [b["records_uri"] for b in stored if b.get("new_records")],
                                  [e["embeddings_uri"] for e in embedded if e and e.get("embeddings_uri")],
                                  embeddings_policy=self.settings.gates.embeddings)

    # -- 8. series completeness (DICOM sources) --------------------------------------------------------
    @property
    def tracks_series(self) -> bool:
        """True for sources whose connector config has a series quiet period (the DICOM connectors)."""
        return getattr(self.connector.config, "series_quiet_period_s", None) is not None

    def complete_series(self, run: RunContext) -> dict[str, Any]:
        """Declare the series that are complete at the run's time, once each, in the series ledger.

        Complete: the expected instance count has arrived, or nothing arrived for the source's
        ``series_quiet_period_s`` before the run's ``ingest_time``.  Re-running the run's task
        rebuilds the same ledger part.  Returns the newly complete series (pseudonymized UIDs).
        """
        from datetime import timedelta

        from transforms.dicom.series import newly_complete_series

        if not self.tracks_series:
            return {"tracked": False, "series": []}
        quiet = float(self.connector.config.series_quiet_period_s)
        ledger = SeriesLedger(self.store)
        done = set(ledger.read(source=self.source, exclude_run_id=run.run_id).column("series_uid").to_pylist())
        table = RecordCatalog(self.store).read(source=self.source).select(["keys", "metadata", "ingest_time"])
        rows = []
        for keys_json, metadata_json, ingest_time in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                                         strict=True):
            keys, metadata = json.loads(keys_json), json.loads(metadata_json)
            rows.append({"series_uid": keys.get("series_uid"), "study_uid": keys.get("study_uid"),
                         "sop_uid": keys.get("sop_uid"), "ingest_time": ingest_time,
                         "expected": metadata.get("series_expected"), "modality": metadata.get("modality")})
        completions = newly_complete_series(rows, source=self.source, now=run.ingest_time,
                                            quiet_period=timedelta(seconds=quiet), already_complete=done)
        ledger.commit(self.source, run.run_id, [c.as_row() for c in completions])
        series = [{"source": c.source, "study_uid": c.study_uid, "series_uid": c.series_uid,
                   "instances": c.instances, "expected": c.expected, "reason": c.reason,
                   "completed_at": isoformat_z(c.completed_at)} for c in completions]
        log.info("%d series of %s complete at %s", len(series), self.source, isoformat_z(run.ingest_time))
        return {"tracked": True, "series": series}


def _concat(schema: pa.Schema, tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables([schema.empty_table(), *tables])


def _records_table(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=record_schema())


def _embedding_row(record: dict[str, Any], modality: str, vector: list[float],
                   identity: EncoderIdentity) -> dict[str, Any]:
    objects = json.loads(record["objects"])
    own = objects.get(IMAGE_ROLE if modality == "image" else "caption") or objects.get("text") or {}
    payload = {
        "sample_id": record["sample_id"], "source": record["source"], "source_id": record["source_id"],
        "modality": modality, "uri": own.get("uri"), "sha256": own.get("sha256"),
        "objects": {role: o["uri"] for role, o in objects.items()}, "text": record["text"],
        "keys": json.loads(record["keys"]), "event_time": isoformat_z(record["event_time"]),
        "ingest_time": isoformat_z(record["ingest_time"]), "run_id": record["run_id"],
        "encoder_key": identity.key, "encoder": identity.as_payload(),
    }
    return {"point_id": point_id(record["sample_id"], modality, identity.key), "sample_id": record["sample_id"],
            "modality": modality, "vector": vector, "encoder": json.dumps(identity.as_payload(), sort_keys=True),
            "payload": json.dumps(payload, sort_keys=True), "event_time": record["event_time"]}


def _write_embeddings(store: ObjectStore, key: str, rows: list[dict[str, Any]]) -> str:
    import pyarrow as pa

    from schemas.arrow import embedding_schema

    return write_table(store, key, pa.Table.from_pylist(rows, schema=embedding_schema()))


def latest_summary(store: ObjectStore, source: str | None = None) -> dict[str, Any] | None:
    """The summary of the run that was scheduled last (by ``run_after``), for one source or any."""
    prefix = f"runs/{safe_name(source)}/" if source else "runs/"
    summaries = [json.loads(store.read_bytes(key)) for key in store.list(prefix) if key.endswith(".json")]
    return max(summaries, key=lambda s: (s["run_after"], s["run_id"])) if summaries else None
