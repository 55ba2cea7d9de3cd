"""One Qdrant collection per feature-view version, served behind an alias: blue-green re-embedding.

A view ``text_embedding_minilm`` at version ``v1a2b...`` lives in the collection
``text_embedding_minilm__v1a2b...``; readers use the alias ``text_embedding_minilm``.  A re-embedding
(a new encoder, hence a new version) is built in its own collection beside the live one while
readers keep using the alias, and :meth:`ViewCollections.publish` swaps the alias to it in one
atomic alias update (delete + create in the same request).  The previous collection stays until
:meth:`ViewCollections.drop` removes it, so a swap can be rolled back by publishing the old version.

Each collection has the view's modality as its named vector (cosine), optional int8 scalar
quantization (``quantize=True``: about 4x less vector memory, rescored on the originals), and payload
indexes on the fields filters use: source, modality, the entity keys, and event time (a Qdrant server
and Edge index them; qdrant-client's local mode has no indexes).  Point ids are uuid5 of the entity
key, so writing a version again replaces, never adds.

Two engines, one interface (:func:`open_view_collections`), one contract test suite:

- ``engine="client"``: ``qdrant-client`` against a Qdrant server or cluster (``url``), or its local
  mode (``path``) for small data;
- ``engine="edge"``: the embedded Qdrant engine (``qdrant-edge-py``) in this process, one Edge shard
  directory per version under ``path``, the alias a small JSON file replaced atomically (``os.replace``)
  on publish.  For single-machine scale without a server; one process at a time per directory.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def _by_key(keys: Sequence[str], records: Iterable[Any]) -> dict[str, StoredPoint | None]:
    """Retrieved records (either engine's) as stored points by entity key, None for the keys not found."""
    found = {str((r.payload or {}).get("key")): r for r in records}
    return {key: None if (r := found.get(key)) is None else StoredPoint(
        point_id=str(r.id), vectors={k: list(map(float, v)) for k, v in dict(r.vector or {}).items()},
        payload=dict(r.payload or {})) for key in keys}


def collection_name(view: FeatureView) -> str:
    return f"{view.name}{VERSION_SEPARATOR}{view.version}"


def view_point_id(view: FeatureView, key: str) -> str:
    """uuid5 of (view, entity key): the same entity is the same point in every version of the view."""
    return stable_uuid("view-point", view.name, key)


def open_view_collections(config: VectorStoreConfig, *, store: QdrantVectorStore | None = None) -> ViewCollections:
    """The view collections of ``config``'s engine (see the module docstring).  ``store``: an open client on
    the same Qdrant to share (qdrant-client's local mode admits one client per path and process); it stays
    open when the collections close."""
    if config.engine == "edge":
        return EdgeViewCollections(config)
    return ClientViewCollections(config, store=store)


class ViewCollections(ABC):
    """Versioned collections of embedding views and the aliases that serve them."""

    def close(self) -> None:  # noqa: B027 - engines that hold nothing open need no close
        pass

    def __enter__(self) -> ViewCollections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _check_view(view: FeatureView) -> None:
        if view.kind != "embedding" or view.modality is None or view.dimension is None:
            raise ConfigError(f"feature view {view.name!r} is not an embedding view; only those live in Qdrant",
                              setting="feature_view")

    @staticmethod
    def _check_vector(view: FeatureView, point: ViewPoint) -> None:
        if len(point.vector) != view.dimension:
            raise ConfigError(f"a {len(point.vector)}-dimensional vector for view {view.name!r} "
                              f"({view.dimension} dimensions); a different encoder needs a new view version",
                              setting="feature_view")

    def _publishable(self, view: FeatureView) -> tuple[str, str | None]:
        name = collection_name(view)
        if name not in self.versions(view.name):
            raise ConfigError(f"view {view.name!r} version {view.version} has no collection yet; create and fill "
                              "it before publishing", setting="feature_view")
        return name, self.live(view.name)

    def _droppable(self, view: FeatureView) -> str:
        name = collection_name(view)
        if self.live(view.name) == name:
            raise ConfigError(f"{name!r} is the live version of {view.name!r}; publish another version first",
                              setting="feature_view")
        return name

    @abstractmethod
    def create(self, view: FeatureView, *, quantize: bool = False, entity_keys: Sequence[str] = ()) -> str:
        """Create the collection of ``view``'s version (no-op if it exists with the same vector); its name."""

    @abstractmethod
    def upsert(self, view: FeatureView, points: Iterable[ViewPoint], *, batch: int = 256) -> int:
        """Write points into ``view``'s version collection (not the alias); returns how many."""

    @abstractmethod
    def live(self, view_name: str) -> str | None:
        """The collection the alias ``view_name`` points to, None if it is not published."""

    @abstractmethod
    def publish(self, view: FeatureView) -> str | None:
        """Point the alias ``view.name`` at this version, atomically; returns the collection it pointed to."""

    @abstractmethod
    def drop(self, view: FeatureView) -> None:
        """Delete a version's collection; refused while the alias serves it."""

    @abstractmethod
    def versions(self, view_name: str) -> list[str]:
        """The collections of every version of a view."""

    @abstractmethod
    def count(self, view: FeatureView) -> int:
        """Points in the live collection of ``view.name`` (0 when none is published)."""

    @abstractmethod
    def get(self, view: FeatureView, keys: Sequence[str]) -> dict[str, StoredPoint | None]:
        """Online lookup by entity key through the live alias: vector + payload, None where absent."""

    @abstractmethod
    def search(self, view: FeatureView, vector: Sequence[float], *, limit: int = 10,
               must: dict[str, Any] | None = None, ef: int | None = None, exact: bool = False) -> list[StoredPoint]:
        """Nearest entities through the live alias, filtered by payload fields (value or list of values).
        ``ef``: the HNSW search beam (higher: better recall, slower; default the engine's); ``exact``: compare
        with every point the filter selects (through the payload index) instead: exact results, a time that
        grows with the filter's selection - the choice for selective filters where HNSW recall suffers."""


class ClientViewCollections(ViewCollections):
    """Versions on a Qdrant server, cluster or qdrant-client local mode; the alias is a Qdrant alias."""

    def __init__(self, config: VectorStoreConfig, *, store: QdrantVectorStore | None = None) -> None:
        self.store = store if store is not None else QdrantVectorStore(config)
        self._owned = store is None

    @property
    def client(self) -> Any:
        return self.store.client

    def close(self) -> None:
        if self._owned:
            self.store.close()

    # -- building a version ----------------------------------------------------------------------------
    def create(self, view: FeatureView, *, quantize: bool = False, entity_keys: Sequence[str] = ()) -> str:
        """Create the collection of ``view``'s version (no-op if it exists with the same vector); its name."""
        from qdrant_client import models

        self._check_view(view)
        assert view.modality is not None and view.dimension is not None
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
            self._check_vector(view, point)
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

        name, previous = self._publishable(view)
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
        self.client.delete_collection(self._droppable(view))

    def versions(self, view_name: str) -> list[str]:
        """The collections of every version of a view on this Qdrant."""
        prefix = view_name + VERSION_SEPARATOR
        return sorted(c.name for c in self.client.get_collections().collections if c.name.startswith(prefix))

    def count(self, view: FeatureView) -> int:
        return int(self.client.count(view.name, exact=True).count) if self.live(view.name) else 0

    # -- reads (through the alias) ---------------------------------------------------------------------
    def get(self, view: FeatureView, keys: Sequence[str]) -> dict[str, StoredPoint | None]:
        ids = [view_point_id(view, k) for k in keys]
        records = self.client.retrieve(view.name, ids=ids, with_payload=True, with_vectors=True)
        return _by_key(keys, records)

    def search(self, view: FeatureView, vector: Sequence[float], *, limit: int = 10,
               must: dict[str, Any] | None = None, ef: int | None = None, exact: bool = False) -> list[StoredPoint]:
        from qdrant_client import models

        assert view.modality is not None
        local = self.store.config.url is None  # local mode always searches exactly and takes no search params
        params = models.SearchParams(hnsw_ef=ef, exact=exact) if (ef or exact) and not local else None
        response = self.client.query_points(view.name, query=list(vector), using=view.modality,
                                            query_filter=_filter(must), limit=limit, with_payload=True,
                                            search_params=params)
        return [StoredPoint(point_id=str(p.id), vectors={}, payload=dict(p.payload or {}), score=float(p.score))
                for p in response.points]


class EdgeViewCollections(ViewCollections):
    """Versions as Qdrant Edge shards under ``config.path`` (embedded engine); the alias is a JSON file."""

    def __init__(self, config: VectorStoreConfig) -> None:
        if config.path is None:
            raise ConfigError("the edge engine needs path (a local directory), not url", setting="ROSETTA_QDRANT_PATH")
        self.root = Path(config.path)
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    def _shard(self, name: str) -> Any:
        from qdrant_edge import EdgeShard

        shard = self._shards.get(name)
        if shard is None:
            if not (self.root / name).is_dir():
                raise ConfigError(f"no Edge shard {name!r} under {self.root}", setting="feature_view")
            shard = self._shards[name] = EdgeShard.load(str(self.root / name))
        return shard

    def _alias_path(self, view_name: str) -> Path:
        return self.root / f"{view_name}.alias.json"

    def create(self, view: FeatureView, *, quantize: bool = False, entity_keys: Sequence[str] = ()) -> str:
        import qdrant_edge as edge

        self._check_view(view)
        assert view.modality is not None and view.dimension is not None
        name = collection_name(view)
        if (self.root / name).is_dir():
            return name
        quantization = edge.ScalarQuantizationConfig(edge.ScalarType.Int8, quantile=0.99, always_ram=True) \
            if quantize else None
        config = edge.EdgeConfig(vectors={view.modality: edge.EdgeVectorParams(
            size=view.dimension, distance=edge.Distance.Cosine)}, quantization_config=quantization)
        shard = self._shards[name] = edge.EdgeShard.create(str(self.root / name), config)
        schemas = {"keyword": edge.PayloadSchemaType.Keyword, "datetime": edge.PayloadSchemaType.Datetime}
        indexed = {**FILTER_FIELDS, **{key: "keyword" for key in entity_keys}}
        for field_name, kind in indexed.items():
            shard.update(edge.UpdateOperation.create_field_index(field_name, schemas[kind]))
        return name

    def upsert(self, view: FeatureView, points: Iterable[ViewPoint], *, batch: int = 256) -> int:
        import qdrant_edge as edge

        assert view.modality is not None
        shard, sent, pending = self._shard(collection_name(view)), 0, []
        for point in points:
            self._check_vector(view, point)
            pending.append(edge.Point(view_point_id(view, point.key), {view.modality: [float(x) for x in point.vector]},
                                      {"key": point.key, **point.payload}))
            if len(pending) >= batch:
                shard.update(edge.UpdateOperation.upsert_points(pending))
                sent, pending = sent + len(pending), []
        if pending:
            shard.update(edge.UpdateOperation.upsert_points(pending))
            sent += len(pending)
        shard.flush()
        return sent

    def live(self, view_name: str) -> str | None:
        path = self._alias_path(view_name)
        return str(json.loads(path.read_text())["collection"]) if path.is_file() else None

    def publish(self, view: FeatureView) -> str | None:
        name, previous = self._publishable(view)
        if previous != name:
            path = self._alias_path(view.name)
            temp = path.with_suffix(f".{os.getpid()}.tmp")
            temp.write_text(json.dumps({"collection": name}))
            os.replace(temp, path)  # atomic: a reader sees the old alias or the new one
        return previous

    def drop(self, view: FeatureView) -> None:
        name = self._droppable(view)
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.root / name, ignore_errors=True)

    def versions(self, view_name: str) -> list[str]:
        prefix = view_name + VERSION_SEPARATOR
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith(prefix))

    def count(self, view: FeatureView) -> int:
        import qdrant_edge as edge

        name = self.live(view.name)
        return int(self._shard(name).count(edge.CountRequest(exact=True))) if name else 0

    def _live_shard(self, view: FeatureView) -> Any:
        name = self.live(view.name)
        if name is None:
            raise ConfigError(f"feature view {view.name!r} has no published version; publish one first",
                              setting="feature_view")
        return self._shard(name)

    def get(self, view: FeatureView, keys: Sequence[str]) -> dict[str, StoredPoint | None]:
        shard = self._live_shard(view)
        records = shard.retrieve([view_point_id(view, k) for k in keys], with_payload=True, with_vector=True)
        return _by_key(keys, records)

    def search(self, view: FeatureView, vector: Sequence[float], *, limit: int = 10,
               must: dict[str, Any] | None = None, ef: int | None = None, exact: bool = False) -> list[StoredPoint]:
        import qdrant_edge as edge

        assert view.modality is not None
        conditions: list[Any] = []
        for key, value in (must or {}).items():
            match = edge.MatchAny(list(value)) if isinstance(value, (list, tuple, set)) else edge.MatchValue(value)
            conditions.append(edge.FieldCondition(key, match=match))
        request = edge.QueryRequest(limit=limit, query=edge.Query.Nearest([float(x) for x in vector],
                                                                          using=view.modality),
                                    with_payload=True, filter=edge.Filter(must=conditions) if conditions else None,
                                    params=edge.SearchParams(hnsw_ef=ef, exact=exact) if ef or exact else None)
        return [StoredPoint(point_id=str(p.id), vectors={}, payload=dict(p.payload or {}), score=float(p.score))
                for p in self._live_shard(view).query(request)]
