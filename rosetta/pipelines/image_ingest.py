"""Image folder -> raw objects -> embeddings -> Qdrant -> manifest.

Steps (each idempotent, each returning URIs and counts):

1. :meth:`~ImageIngestPipeline.check` - fail fast on a wrong endpoint, credentials, model path or folder.
2. :meth:`~ImageIngestPipeline.plan` - list the folder, split it into batches, write each batch's item list.
3. :meth:`~ImageIngestPipeline.store_batch` - read, validate and store each new sample's image and caption
   (content-addressed); unchanged samples are skipped, bad ones quarantined.
4. :meth:`~ImageIngestPipeline.embed_batch` - encode the batch's new samples; stage the vectors.
5. :meth:`~ImageIngestPipeline.write_vectors` - upsert every staged vector into Qdrant (one writer per run,
   so Qdrant's single-process local mode works under any executor).
6. :meth:`~ImageIngestPipeline.commit` - write the run's manifest and quarantine parts, then the run summary.

The manifest is committed last: if a run dies before that, the next run sees
the samples as new again and redoes the (idempotent) writes, so there are no
gaps and no duplicates.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connectors.image_folder import FolderItem, ImageFolderConnector
from feature_store.ids import point_id
from feature_store.manifest import (
    Manifest,
    QuarantineLedger,
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
from rosetta.pipelines.settings import MAX_BATCHES, IngestSettings
from schemas.arrow import manifest_schema, quarantine_schema
from schemas.records import EncoderIdentity, ManifestEntry, ObjectRef, QuarantineEntry, RawSample

if TYPE_CHECKING:
    from transforms.encoders.base import ImageEncoder, TextEncoder

log = logging.getLogger(__name__)

STAGE_STORE = "store"
STAGE_EMBED = "embed"


@dataclass(frozen=True, slots=True)
class RunContext:
    """Identity of one run.  ``ingest_time`` is the run's data interval end (UTC), never ``now()``."""

    run_id: str
    ingest_time: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "ingest_time", ensure_utc(self.ingest_time, name="ingest_time"))

    @property
    def key(self) -> str:
        return safe_name(self.run_id)

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
    entries: list[ManifestEntry]
    quarantine: QuarantineEntry | None = None
    unchanged: bool = False
    objects_written: int = 0
    bytes_written: int = 0


class ImageIngestPipeline:
    """The steps of one source's ingestion, sharing lazily built clients and models.

    An Airflow task builds one per call; a benchmark or a long-lived worker
    can reuse one across batches.  Call :meth:`close` (or use ``with``) to
    release the clients.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> ObjectStore:
        return open_object_store(self.settings.feature_store.object_store)

    @cached_property
    def connector(self) -> ImageFolderConnector:
        return ImageFolderConnector(self.settings.source)

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

    def __enter__(self) -> ImageIngestPipeline:
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
        return {"object_store": self.store.root_uri, "vector_store": settings.feature_store.vector_store.location,
                "source_dir": str(settings.source.root)}

    # -- 2. plan ---------------------------------------------------------------------------------
    def plan(self, run: RunContext) -> list[dict[str, Any]]:
        """Split the folder into at most MAX_BATCHES batches; one small JSON file per batch."""
        items = self.connector.list_items()
        size = max(self.settings.batch_size, -(-len(items) // MAX_BATCHES))
        batches = []
        for index, start in enumerate(range(0, len(items), size)):
            chunk = items[start:start + size]
            uri = _write_json(self.store, run.staging("plan", f"batch-{index:05d}.json"),
                              [item.to_json() for item in chunk])
            batches.append({"batch": index, "plan_uri": uri, "items": len(chunk),
                            "label": f"batch {index}: {chunk[0].source_id} .. {chunk[-1].source_id}"})
        log.info("planned %d items of %s in %d batches", len(items), self.settings.source.root, len(batches))
        return batches

    # -- 3. store --------------------------------------------------------------------------------
    def store_batch(self, run: RunContext, batch: dict[str, Any], *,
                    known: set[tuple[str, str, str]] | None = None) -> dict[str, Any]:
        """Store the batch's new samples and quarantine its bad ones.

        ``known`` (``(source_id, role, sha256)`` already in the manifest) is read
        from the manifest when not given; this run's own earlier commit is
        ignored so re-running a run rebuilds the same result.  An unchanged
        sample is recognised by its hashes before any decoding.
        """
        store, connector = self.store, self.connector
        items = [FolderItem.from_json(d) for d in _read_json(store, batch["plan_uri"])]
        if known is None:
            known = Manifest(store).known_versions(self.settings.source.source, exclude_run_id=run.run_id)

        def one(item: FolderItem) -> _ItemOutcome:
            try:
                files = connector.read_files(item)
                digests = {role: sha256_bytes(data) for role, data in files.items()}
                if item.problem is None and "caption" in files and \
                        (item.source_id, "image", digests["image"]) in known and \
                        (item.source_id, "caption", digests["caption"]) in known:
                    return _ItemOutcome(entries=[], unchanged=True)
                sample = connector.parse(item, files)
            except BadRecordError as bad:
                return _ItemOutcome(entries=[], quarantine=self._quarantine(run, item.source_id, bad))
            return self._store_sample(run, sample, digests)

        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="rosetta-store") as pool:
            outcomes = list(pool.map(one, items))
        entries = [e for o in outcomes for e in o.entries]
        quarantined = [o.quarantine for o in outcomes if o.quarantine is not None]
        stem = run.staging("stored", f"batch-{batch['batch']:05d}")
        staged = write_table(store, f"{stem}.manifest.parquet", manifest_table(entries))
        staged_quarantine = write_table(store, f"{stem}.quarantine.parquet", quarantine_table(quarantined))
        result = {
            "batch": batch["batch"], "staged_uri": staged, "quarantine_uri": staged_quarantine, "items": len(items),
            "new_samples": sum(1 for o in outcomes if o.entries),
            "unchanged": sum(1 for o in outcomes if o.unchanged),
            "quarantined": len(quarantined),
            "objects_written": sum(o.objects_written for o in outcomes),
            "bytes_written": sum(o.bytes_written for o in outcomes),
        }
        log.info("batch %s: %s", batch["batch"], result)
        return result

    def _store_sample(self, run: RunContext, sample: RawSample, digests: dict[str, str]) -> _ItemOutcome:
        outcome = _ItemOutcome(entries=[])
        for role, data, media_type in (("image", sample.image, sample.image_media_type),
                                       ("caption", sample.caption_bytes, sample.caption_media_type)):
            ref = self.store.put(data, media_type=media_type,
                                 sha256=digests.get(role))
            if ref.created:
                outcome.objects_written += 1
                outcome.bytes_written += ref.size_bytes
            outcome.entries.append(ManifestEntry(
                sample_id=sample.sample_id, source=sample.source, source_id=sample.source_id, role=role,
                key=ref.key, uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size_bytes, media_type=media_type,
                event_time=sample.event_time, ingest_time=run.ingest_time, run_id=run.run_id))
        return outcome

    def _quarantine(self, run: RunContext, source_id: str, bad: BadRecordError, stage: str = STAGE_STORE,
                    ref: ManifestEntry | ObjectRef | None = None) -> QuarantineEntry:
        """A quarantine record; the bad bytes are kept in the object store (``ref`` if already stored)."""
        if ref is None and bad.payload:
            ref = self.store.put(bad.payload)
        log.warning("quarantined %s at %s: %s", source_id, stage, bad.reason)
        return QuarantineEntry(source=self.settings.source.source, source_id=source_id, reason=bad.reason,
                               stage=stage, uri=ref.uri if ref else None, sha256=ref.sha256 if ref else None,
                               size_bytes=ref.size_bytes if ref else None, ingest_time=run.ingest_time,
                               run_id=run.run_id)

    def _read_staged(self, uri: str) -> list[ManifestEntry]:
        table = read_table(self.store, self.store.key_for(uri), manifest_schema())
        return [ManifestEntry(**row) for row in table.to_pylist()]

    # -- 4. embed --------------------------------------------------------------------------------
    def embed_batch(self, run: RunContext, stored: dict[str, Any]) -> dict[str, Any]:
        """Encode the new samples of one stored batch (image and caption) and stage the vectors.

        Images are decoded a chunk at a time; one that fails to decode is
        quarantined (stage ``embed``) and the rest go on.  Loads no model when
        the batch has nothing new.
        """
        if not stored["new_samples"]:
            return {"batch": stored["batch"], "embeddings_uri": None, "points": 0, "quarantined": 0}
        from transforms.encoders.image import to_rgb_image

        store = self.store
        entries = self._read_staged(stored["staged_uri"])
        samples: dict[str, dict[str, ManifestEntry]] = {}
        for entry in entries:
            samples.setdefault(entry.sample_id, {})[entry.role] = entry
        image_encoder, text_encoder = self.image_encoder, self.text_encoder
        rows: list[dict[str, Any]] = []
        quarantined: list[QuarantineEntry] = []
        ids = sorted(samples)
        chunk_size = max(1, self.settings.image_encoder.batch_size * 4)
        for start in range(0, len(ids), chunk_size):
            chunk, pictures = [], []
            for sample_id in ids[start:start + chunk_size]:
                image = samples[sample_id]["image"]
                data = store.read_bytes(image.key)
                try:
                    picture = to_rgb_image(data)
                    picture.load()
                except Exception as exc:
                    bad = BadRecordError(f"{image.uri}: the image encoder cannot decode it ({type(exc).__name__}: "
                                         f"{exc}); re-export the file", source_id=image.source_id)
                    quarantined.append(self._quarantine(run, image.source_id, bad, stage=STAGE_EMBED, ref=image))
                    continue
                chunk.append(sample_id)
                pictures.append(picture)
            if not chunk:
                continue
            captions = [_caption_text(store.read_bytes(samples[s]["caption"].key), samples[s]["caption"].media_type)
                        for s in chunk]
            encoded = (("image", image_encoder.identity, image_encoder.encode(pictures)),
                       ("text", text_encoder.identity, text_encoder.encode(captions)))
            for modality, identity, vectors in encoded:
                for sample_id, vector, caption in zip(chunk, vectors, captions, strict=True):
                    pair = samples[sample_id]
                    own = pair["image" if modality == "image" else "caption"]
                    rows.append(_embedding_row(sample_id, modality, vector.tolist(), identity, own, pair, caption))
        quarantine_key = run.staging("embed-quarantine", f"batch-{stored['batch']:05d}.parquet")
        if quarantined:
            write_table(store, quarantine_key, quarantine_table(quarantined))
        else:
            store.delete(quarantine_key)
        uri = (_write_embeddings(store, run.staging("embeddings", f"batch-{stored['batch']:05d}.parquet"), rows)
               if rows else None)
        return {"batch": stored["batch"], "embeddings_uri": uri, "points": len(rows),
                "quarantined": len(quarantined),
                "encoders": {"image": image_encoder.identity.key, "text": text_encoder.identity.key}}

    # -- 5. vectors ------------------------------------------------------------------------------
    def write_vectors(self, run: RunContext, embedded: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Upsert every staged vector of the run into Qdrant (deterministic IDs: re-runs add nothing)."""
        import pyarrow.parquet as pq

        store = self.store
        config = self.settings.feature_store.vector_store
        uris = [e["embeddings_uri"] for e in embedded if e.get("embeddings_uri")]
        tables = [pq.read_table(io.BytesIO(store.read_bytes(store.key_for(uri)))) for uri in uris]
        points = [VectorPoint(point_id=row["point_id"], modality=row["modality"], vector=row["vector"],
                              payload=json.loads(row["payload"]))
                  for table in tables for row in table.to_pylist()]
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
               run_after: datetime | None = None) -> dict[str, Any]:
        """Commit the run's manifest and quarantine parts, then write and return the run summary."""
        import pyarrow as pa

        store, settings = self.store, self.settings
        batches = sorted(stored, key=lambda b: b["batch"])
        entries = pa.concat_tables([manifest_schema().empty_table()] + [
            read_table(store, store.key_for(b["staged_uri"]), manifest_schema()) for b in batches])
        quarantine_keys = [store.key_for(b["quarantine_uri"]) for b in batches]
        quarantine_keys += list(store.list(run.staging("embed-quarantine") + "/"))
        quarantined = pa.concat_tables([quarantine_schema().empty_table()] + [
            read_table(store, key, quarantine_schema()) for key in quarantine_keys])
        manifest_rows = Manifest(store).commit(run.run_id, entries)
        quarantine_rows = QuarantineLedger(store).commit(run.run_id, quarantined)
        summary = {
            "run_id": run.run_id, "source": settings.source.source, "source_dir": str(settings.source.root),
            "ingest_time": isoformat_z(run.ingest_time),
            "run_after": isoformat_z(run_after or run.ingest_time),
            "items": sum(b["items"] for b in stored),
            "new_samples": sum(b["new_samples"] for b in stored),
            "unchanged_samples": sum(b["unchanged"] for b in stored),
            "quarantined": quarantine_rows,
            "objects_written": sum(b["objects_written"] for b in stored),
            "bytes_written": sum(b["bytes_written"] for b in stored),
            "manifest_rows": manifest_rows,
            "points_written": vectors.get("points_written", 0),
            "points_added": vectors.get("points_added", 0),
            "points_total": vectors.get("points_total", 0),
            "object_store": store.root_uri,
            "vector_store": settings.feature_store.vector_store.location,
            "quarantine_reasons": quarantined.select(["source_id", "reason", "stage"]).slice(0, 50).to_pylist(),
        }
        summary["summary_uri"] = _write_json(store, f"runs/{run.key}.json", summary)
        log.info("run summary: %s", summary)
        return summary


def _caption_text(data: bytes, media_type: str) -> str:
    text = data.decode("utf-8")
    if media_type == "application/json":
        return str(json.loads(text)["caption"]).strip()
    return text.strip()


def _embedding_row(sample_id: str, modality: str, vector: list[float], identity: EncoderIdentity,
                   own: ManifestEntry, pair: dict[str, ManifestEntry], caption: str) -> dict[str, Any]:
    payload = {
        "sample_id": sample_id, "source": own.source, "source_id": own.source_id, "modality": modality,
        "uri": own.uri, "sha256": own.sha256, "media_type": own.media_type, "size_bytes": own.size_bytes,
        "image_uri": pair["image"].uri, "caption_uri": pair["caption"].uri, "caption": caption,
        "event_time": isoformat_z(own.event_time), "ingest_time": isoformat_z(own.ingest_time),
        "run_id": own.run_id, "encoder_key": identity.key, "encoder": identity.as_payload(),
    }
    return {"point_id": point_id(sample_id, modality, identity.key), "sample_id": sample_id, "modality": modality,
            "vector": vector, "encoder": json.dumps(identity.as_payload(), sort_keys=True),
            "payload": json.dumps(payload, sort_keys=True), "event_time": own.event_time}


def _write_embeddings(store: ObjectStore, key: str, rows: list[dict[str, Any]]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.arrow import embedding_schema

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=embedding_schema()), buffer)
    store.write_bytes(key, buffer.getvalue(), media_type="application/vnd.apache.parquet")
    return store.uri_for(key)


def latest_summary(store: ObjectStore) -> dict[str, Any] | None:
    """The summary of the run that was scheduled last (by ``run_after``)."""
    summaries = [json.loads(store.read_bytes(key)) for key in store.list("runs/") if key.endswith(".json")]
    return max(summaries, key=lambda s: (s["run_after"], s["run_id"])) if summaries else None
