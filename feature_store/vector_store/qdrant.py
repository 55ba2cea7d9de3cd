"""Vectors in Qdrant: one named vector per modality, deterministic point IDs, lineage payload."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from feature_store.vector_store.config import VectorStoreConfig
from rosetta.core.errors import ConfigError, RetriableError, RosettaError

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

#: Payload fields that filters use; indexed on server deployments.
INDEXED_FIELDS = {"sample_id": "keyword", "source": "keyword", "modality": "keyword",
                  "encoder_key": "keyword", "event_time": "datetime"}


@dataclass(frozen=True, slots=True)
class VectorPoint:
    """One vector of one modality of one sample, with its lineage payload."""

    point_id: str
    modality: str
    vector: Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPoint:
    point_id: str
    vectors: dict[str, list[float]]
    payload: dict[str, Any]
    score: float | None = None


class QdrantVectorStore:
    """A Qdrant collection with one named vector per modality.

    The client is built on first use and closed by :meth:`close` (local mode
    holds a lock on its path until then).
    """

    def __init__(self, config: VectorStoreConfig) -> None:
        self.config = config
        self.collection = config.collection
        self._client: QdrantClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"QdrantVectorStore({self.config.location}, collection={self.collection!r})"

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> QdrantClient:
        from qdrant_client import QdrantClient

        cfg = self.config
        try:
            if cfg.url is not None:
                return QdrantClient(url=cfg.url, api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
                                    timeout=cfg.timeout_s)
            assert cfg.path is not None
            if str(cfg.path) != ":memory:":
                cfg.path.mkdir(parents=True, exist_ok=True)
            return QdrantClient(path=str(cfg.path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise RetriableError(f"Qdrant local storage {cfg.path} is open in another process; local mode "
                                     "allows one process at a time: wait for it, or set ROSETTA_QDRANT_URL to a "
                                     "Qdrant server for parallel access") from exc
            raise

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> QdrantVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise(self, exc: Exception, action: str) -> NoReturn:
        if isinstance(exc, RosettaError):
            raise exc
        text = str(exc)
        if "Unauthorized" in text or "401" in text or "403" in text:
            raise ConfigError(f"Qdrant at {self.config.location} refused to {action}: check ROSETTA_QDRANT_API_KEY",
                              setting="ROSETTA_QDRANT_API_KEY") from exc
        raise RetriableError(f"Qdrant at {self.config.location} failed to {action} "
                             f"collection {self.collection!r}: {exc}") from exc

    # -- schema --------------------------------------------------------------------------------
    def check(self) -> None:
        """Reach Qdrant once; a ConfigError if it cannot be reached."""
        try:
            self.client.get_collections()
        except RosettaError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot reach Qdrant at {self.config.location}: {exc}; check ROSETTA_QDRANT_URL "
                              "or ROSETTA_QDRANT_PATH", setting="ROSETTA_QDRANT_URL") from exc

    def vector_dimensions(self) -> dict[str, int]:
        """Named vectors of the collection and their sizes ({} if it does not exist)."""
        try:
            if not self.client.collection_exists(self.collection):
                return {}
            info = self.client.get_collection(self.collection)
        except Exception as exc:
            self._raise(exc, "describe")
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict):
            return {"": int(vectors.size)} if vectors is not None else {}
        return {name: int(params.size) for name, params in vectors.items()}

    def ensure_collection(self, dimensions: dict[str, int]) -> None:
        """Create the collection with one cosine named vector per modality, or check it matches."""
        from qdrant_client import models

        existing = self.vector_dimensions()
        if not existing:
            try:
                self.client.create_collection(
                    self.collection,
                    vectors_config={name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                                    for name, dim in sorted(dimensions.items())},
                )
                if self.config.url is not None:  # local mode has no payload indexes
                    for name, schema in INDEXED_FIELDS.items():
                        self.client.create_payload_index(self.collection, name,
                                                         field_schema=models.PayloadSchemaType(schema))
            except Exception as exc:
                if "already exists" not in str(exc):
                    self._raise(exc, "create")
            existing = self.vector_dimensions()
        for name, dim in dimensions.items():
            if existing.get(name) != dim:
                raise ConfigError(
                    f"Qdrant collection {self.collection!r} has vectors {existing}, but the encoders produce "
                    f"{name}={dim}; use a new collection (ROSETTA_QDRANT_COLLECTION) for a new encoder",
                    setting="ROSETTA_QDRANT_COLLECTION")

    # -- writes --------------------------------------------------------------------------------
    def upsert(self, points: Iterable[VectorPoint]) -> int:
        """Write points (insert or replace by id); returns how many were sent."""
        from qdrant_client import models

        sent = 0
        batch: list[models.PointStruct] = []
        for point in points:
            batch.append(models.PointStruct(id=point.point_id, vector={point.modality: list(point.vector)},
                                            payload=point.payload))
            if len(batch) >= self.config.upsert_batch:
                sent += self._send(batch)
                batch = []
        if batch:
            sent += self._send(batch)
        return sent

    def _send(self, batch: list[Any]) -> int:
        try:
            self.client.upsert(self.collection, points=batch, wait=True)
        except Exception as exc:
            self._raise(exc, "upsert into")
        return len(batch)

    def count(self) -> int:
        if not self.vector_dimensions():
            return 0
        try:
            return int(self.client.count(self.collection, exact=True).count)
        except Exception as exc:
            self._raise(exc, "count")

    # -- reads ---------------------------------------------------------------------------------
    def scroll(self, *, must: dict[str, Any | list[Any]] | None = None, with_vectors: bool | list[str] = True,
               page: int = 256) -> Iterator[StoredPoint]:
        """Every point matching ``must`` (field -> value, or list of allowed values)."""
        query_filter = _filter(must)
        offset = None
        while True:
            try:
                records, offset = self.client.scroll(self.collection, scroll_filter=query_filter, limit=page,
                                                     offset=offset, with_payload=True, with_vectors=with_vectors)
            except Exception as exc:
                self._raise(exc, "scroll")
            for record in records:
                yield StoredPoint(point_id=str(record.id), vectors=_vectors(record.vector),
                                  payload=dict(record.payload or {}))
            if offset is None:
                return

    def search(self, modality: str, vector: Sequence[float], *, limit: int = 10,
               must: dict[str, Any | list[Any]] | None = None) -> list[StoredPoint]:
        """Nearest points by cosine similarity on the ``modality`` vector."""
        try:
            response = self.client.query_points(self.collection, query=list(vector), using=modality,
                                                query_filter=_filter(must), limit=limit, with_payload=True)
        except Exception as exc:
            self._raise(exc, "search")
        return [StoredPoint(point_id=str(p.id), vectors={}, payload=dict(p.payload or {}), score=float(p.score))
                for p in response.points]


def _filter(must: dict[str, Any] | None) -> Any:
    if not must:
        return None
    from qdrant_client import models

    conditions: list[Any] = []
    for key, value in must.items():
        if isinstance(value, (list, tuple, set)):
            conditions.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
        else:
            conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=conditions)


def _vectors(raw: Any) -> dict[str, list[float]]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {name: list(map(float, values)) for name, values in raw.items()}
    return {"": list(map(float, raw))}
