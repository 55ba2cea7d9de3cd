"""One Qdrant collection per feature-view version, served behind an alias: blue-green re-embedding.

A view ``text_embedding_minilm`` at version ``v1a2b...`` lives in the collection
``text_embedding_minilm__v1a2b...``; readers use the alias ``text_embedding_minilm``.  A re-embedding
(a new encoder, hence a new version) is built in its own collection beside the live one while
readers keep using the alias, and :meth:`ViewCollections.publish` swaps the alias to it in one
atomic alias update (delete + create in the same request).  The previous collection stays until
:meth:`ViewCollections.drop` removes it, so a swap can be rolled back by publishing the old version.

Each collection has the view's modality as its named vector (cosine), optional int8 scalar
quantization (``quantize=True``: about 4x less vector memory, rescored on the originals), and on a
Qdrant server payload indexes on the fields filters use: source, modality, the entity keys, and
event time.  Point ids are uuid5 of the entity key, so writing a version again replaces, never adds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from feature_store.vector_store.qdrant import QdrantVectorStore, StoredPoint, _filter
from rosetta.core.errors import ConfigError
from rosetta.core.hashing import stable_uuid

if TYPE_CHECKING:
    from feature_store.vector_store.config import VectorStoreConfig
    from schemas.features import FeatureView

VERSION_SEPARATOR = "__"
FILTER_FIELDS = {"source": "keyword", "modality": "keyword", "event_time": "datetime"}


@dataclass(frozen=True)
class ViewPoint:
    """One entity's embedding in one view version, with its payload (entity keys, source, times...)."""

    key: str
    vector: Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)


def collection_name(view: FeatureView) -> str:
    return f"{view.name}{VERSION_SEPARATOR}{view.version}"


def view_point_id(view: FeatureView, key: str) -> str:
    """uuid5 of (view, entity key): the same entity is the same point in every version of the view."""
    return stable_uuid("view-point", view.name, key)


class ViewCollections:
    """Versioned collections and their aliases on one Qdrant (server, cluster or local mode)."""

    def __init__(self, config: VectorStoreConfig) -> None:
        self.store = QdrantVectorStore(config)

    @property
    def client(self) -> Any:
        return self.store.client

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ViewCollections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building a version ----------------------------------------------------------------------------
    def create(self, view: FeatureView, *, quantize: bool = False, entity_keys: Sequence[str] = ()) -> str:
        """Create the collection of ``view``'s version (no-op if it exists with the same vector); its name."""
        from qdrant_client import models

        if view.kind != "embedding" or view.modality is None or view.dimension is None:
            raise ConfigError(f"feature view {view.name!r} is not an embedding view; only those live in Qdrant",
                              setting="feature_view")
        name = collection_name(view)
        if self.client.collection_exists(name):
            vectors = self.client.get_collection(name).config.params.vectors
            size = vectors[view.modality].size if isinstance(vectors, dict) and view.modality in vectors else None
            if size != view.dimension:
                raise ConfigError(f"Qdrant collection {name!r} exists with another vector shape; drop it first",
                                  setting="feature_view")
            return name
        quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True)) if quantize else None
        self.client.create_collection(name, vectors_config={view.modality: models.VectorParams(
            size=view.dimension, distance=models.Distance.COSINE)}, quantization_config=quantization)
        if self.store.config.url is not None:  # local mode has no payload indexes
            indexed = {**FILTER_FIELDS, **{key: "keyword" for key in entity_keys}}
            for field_name, schema in indexed.items():
                self.client.create_payload_index(name, field_name, field_schema=models.PayloadSchemaType(schema))
        return name

    def upsert(self, view: FeatureView, points: Iterable[ViewPoint], *, batch: int = 256) -> int:
        """Write points into ``view``'s version collection (not the alias); returns how many."""
        from qdrant_client import models

        assert view.modality is not None
        name, sent, pending = collection_name(view), 0, []
        for point in points:
            if len(point.vector) != view.dimension:
                raise ConfigError(f"a {len(point.vector)}-dimensional vector for view {view.name!r} "
                                  f"({view.dimension} dimensions); a different encoder needs a new view version",
                                  setting="feature_view")
            pending.append(models.PointStruct(id=view_point_id(view, point.key), vector={view.modality:
                                                                                         list(point.vector)},
                                               payload={"key": point.key, **point.payload}))
            if len(pending) >= batch:
                self.client.upsert(name, points=pending, wait=True)
                sent, pending = sent + len(pending), []
        if pending:
            self.client.upsert(name, points=pending, wait=True)
            sent += len(pending)
        return sent

    # -- serving ---------------------------------------------------------------------------------------
    def live(self, view_name: str) -> str | None:
        """The collection the alias ``view_name`` points to, None if it is not published."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == view_name:
                return str(alias.collection_name)
        return None

    def publish(self, view: FeatureView) -> str | None:
        """Point the alias ``view.name`` at this version, atomically; returns the collection it pointed to."""
        from qdrant_client import models

        name = collection_name(view)
        if not self.client.collection_exists(name):
            raise ConfigError(f"view {view.name!r} version {view.version} has no collection yet; create and fill "
                              "it before publishing", setting="feature_view")
        previous = self.live(view.name)
        if previous == name:
            return previous
        operations: list[Any] = []
        if previous is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=view.name)))
        operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
            collection_name=name, alias_name=view.name)))
        self.client.update_collection_aliases(change_aliases_operations=operations)
        return previous

    def drop(self, view: FeatureView) -> None:
        """Delete a version's collection; refused while the alias serves it."""
        name = collection_name(view)
        if self.live(view.name) == name:
            raise ConfigError(f"{name!r} is the live version of {view.name!r}; publish another version first",
                              setting="feature_view")
        self.client.delete_collection(name)

    def versions(self, view_name: str) -> list[str]:
        """The collections of every version of a view on this Qdrant."""
        prefix = view_name + VERSION_SEPARATOR
        return sorted(c.name for c in self.client.get_collections().collections if c.name.startswith(prefix))

    # -- reads (through the alias) ---------------------------------------------------------------------
    def get(self, view: FeatureView, keys: Sequence[str]) -> dict[str, StoredPoint | None]:
        """Online lookup by entity key through the live alias: vector + payload, None where absent."""
        ids = [view_point_id(view, k) for k in keys]
        records = self.client.retrieve(view.name, ids=ids, with_payload=True, with_vectors=True)
        found = {str(r.payload.get("key")): r for r in records if r.payload}
        out: dict[str, StoredPoint | None] = {}
        for key in keys:
            record = found.get(key)
            out[key] = None if record is None else StoredPoint(
                point_id=str(record.id), vectors={k: list(map(float, v)) for k, v in (record.vector or {}).items()},
                payload=dict(record.payload or {}))
        return out

    def search(self, view: FeatureView, vector: Sequence[float], *, limit: int = 10,
               must: dict[str, Any] | None = None) -> list[StoredPoint]:
        """Nearest entities through the live alias, filtered by payload fields (value or list of values)."""
        assert view.modality is not None
        response = self.client.query_points(view.name, query=list(vector), using=view.modality,
                                            query_filter=_filter(must), limit=limit, with_payload=True)
        return [StoredPoint(point_id=str(p.id), vectors={}, payload=dict(p.payload or {}), score=float(p.score))
                for p in response.points]
