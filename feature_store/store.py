"""The feature store facade that training jobs use to look features up.

    from feature_store import FeatureStore

    with FeatureStore.from_env() as fs:
        features = fs.get_online_features(["demo_photos/chelsea"])
        vector = features["demo_photos/chelsea"].vectors["image"]

Kept small on purpose: each capability lives in its own module
(object store, manifest, vector store) and this class only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from feature_store.config import FeatureStoreConfig
from feature_store.manifest import Manifest, QuarantineLedger
from feature_store.object_store import ObjectStore, open_object_store
from feature_store.vector_store import QdrantVectorStore
from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa

    from feature_store.offline import OfflineStore
    from feature_store.registry import Registry
    from feature_store.vector_store.qdrant import StoredPoint
    from feature_store.vector_store.versions import ViewCollections
    from schemas.features import FeatureView
    from transforms.encoders.base import ImageEncoder, TextEncoder


@dataclass(frozen=True)
class SampleFeatures:
    """The online features of one sample.

    ``vectors`` maps modality (``image``, ``text``) to the unit-length vector;
    ``encoders`` maps modality to the identity of the encoder that made it;
    ``payload`` holds the lineage: ``objects`` (role -> URI), ``<modality>_uri`` and
    ``<modality>_sha256`` of the object each vector was made from, ``text``,
    entity ``keys``, source, and ``event_time``/``ingest_time`` (ISO 8601, UTC).
    """

    sample_id: str
    vectors: dict[str, list[float]] = field(default_factory=dict)
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    sample_id: str
    score: float
    modality: str
    payload: dict[str, Any]


class FeatureStore:
    """Online lookups and search over what the pipeline stored."""

    def __init__(self, config: FeatureStoreConfig) -> None:
        self.config = config
        self._encoders: dict[str, TextEncoder | ImageEncoder] = {}

    @classmethod
    def from_env(cls) -> FeatureStore:
        return cls(FeatureStoreConfig.from_env())

    @cached_property
    def objects(self) -> ObjectStore:
        return open_object_store(self.config.object_store)

    @cached_property
    def vectors(self) -> QdrantVectorStore:
        return QdrantVectorStore(self.config.vector_store)

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest(self.objects)

    @cached_property
    def quarantine(self) -> QuarantineLedger:
        return QuarantineLedger(self.objects)

    @cached_property
    def registry(self) -> Registry:
        """Entities and feature-view versions (``rosetta features apply``)."""
        from feature_store.registry import Registry

        return Registry(self.objects)

    @cached_property
    def offline(self) -> OfflineStore:
        """Feature values per view version, as Parquet in the same object store."""
        from feature_store.offline import OfflineStore

        return OfflineStore.from_config(self.config.object_store)

    def get_historical_features(self, entity_rows: pa.Table | None = None, *, features: Sequence[str],
                                start: datetime | None = None, end: datetime | None = None,
                                timestamp: str = "event_timestamp", bitemporal: bool = True,
                                full_feature_names: bool = False,
                                versions: dict[str, str] | None = None) -> pa.Table:
        """Point-in-time correct features for training (see :mod:`feature_store.retrieval`).

        ``features``: ``view:feature`` or ``view`` names from the registry; each view at its current version,
        or the one pinned in ``versions`` (view name -> version), so a training job can keep reading the
        version it was built on after a re-embedding.
        """
        from feature_store.retrieval import FeatureRef, get_historical_features

        names = list(dict.fromkeys(FeatureRef.parse(f).view for f in features))
        views, entities = self.registry.resolve(names, versions)
        return get_historical_features(self.offline, views, {e.name: e for e in entities}, entity_rows,
                                       features=list(features),
                                       start=start, end=end, timestamp=timestamp, bitemporal=bitemporal,
                                       full_feature_names=full_feature_names)

    @cached_property
    def collections(self) -> ViewCollections:
        """The embedding views' versioned Qdrant collections, each view served behind its alias.  With
        qdrant-client they share :attr:`vectors`' client (its local mode admits one client per path)."""
        from feature_store.vector_store.versions import open_view_collections

        config = self.config.vector_store
        return open_view_collections(config, store=self.vectors if config.engine == "client" else None)

    def live_view(self, view: str) -> FeatureView:
        """The version of an embedding view that its alias serves (which may trail the registry's current one
        while a re-embedding is built beside it).  ConfigError when none is published."""
        from feature_store.vector_store.versions import VERSION_SEPARATOR

        live = self.collections.live(view)
        if live is None:
            raise ConfigError(f"feature view {view!r} has no published version online; run the ingestion DAG of "
                              "its source, or 'rosetta features materialize' and 'publish'", setting="feature_view")
        return self.registry.view(view, live.rpartition(VERSION_SEPARATOR)[2])

    def get_view_features(self, view: str, keys: Sequence[str]) -> dict[str, StoredPoint | None]:
        """Online values of an embedding view by entity key: vector (by modality) and payload (entity keys,
        source, event and ingest time) from the live version, in the order asked; None for unknown keys."""
        return self.collections.get(self.live_view(view), list(keys))

    def search_view(self, view: str, query: Any, *, limit: int = 10, filters: dict[str, Any] | None = None,
                    ef: int | None = None, exact: bool = False) -> list[StoredPoint]:
        """The ``limit`` entities of ``view`` nearest to ``query`` (cosine), best first, from the live version.

        ``query``: a vector of the view's dimension, or content of the view's modality (a text for a text
        view; an image - PIL image or encoded bytes - for an image view), embedded by the encoder that built
        the live version (its weights checked by sha256).  ``filters``: payload field -> value or list of
        values (``source``, ``modality``, entity keys).  ``ef``: the HNSW search beam; ``exact``: compare with
        every point the filters select (exact; for selective filters).
        """
        import numpy as np

        target = self.live_view(view)
        assert target.modality is not None and target.encoder is not None
        if isinstance(query, str) or not _is_vector(query):
            if isinstance(query, str) != (target.modality == "text"):
                raise ConfigError(f"feature view {view!r} holds {target.modality} embeddings; query it with "
                                  f"{'a text' if target.modality == 'text' else 'an image'} or a vector",
                                  setting="query")
            encoder = self._view_encoder(target)
            query = encoder.encode([query])[0]
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if vector.shape[0] != target.dimension:
            raise ConfigError(f"a {vector.shape[0]}-dimensional query for feature view {view!r}, whose live version "
                              f"has {target.dimension} dimensions", setting="query")
        return self.collections.search(target, vector.tolist(), limit=limit, must=filters, ef=ef, exact=exact)

    def _view_encoder(self, view: FeatureView) -> TextEncoder | ImageEncoder:
        from transforms.encoders.config import load_view_encoder

        assert view.encoder is not None
        key = view.encoder.model_dump_json()
        if key not in self._encoders:
            self._encoders[key] = load_view_encoder(view.encoder)
        return self._encoders[key]

    def close(self) -> None:
        if "collections" in self.__dict__:
            self.collections.close()
        if "vectors" in self.__dict__:
            self.vectors.close()
        if "objects" in self.__dict__:
            self.objects.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_online_features(self, sample_ids: Sequence[str], *, modalities: Sequence[str] | None = None,
                            encoder_keys: Sequence[str] | None = None) -> dict[str, SampleFeatures | None]:
        """Vectors and payload for each sample id, in the order asked; ``None`` for unknown ids.

        ``modalities`` limits the vectors returned; ``encoder_keys`` picks
        encoder versions (default: every version present, the last one wins
        per modality in encoder-key order).
        """
        must: dict[str, Any] = {"sample_id": list(dict.fromkeys(sample_ids))}
        if modalities:
            must["modality"] = list(modalities)
        if encoder_keys:
            must["encoder_key"] = list(encoder_keys)
        found: dict[str, SampleFeatures] = {}
        points = sorted(self.vectors.scroll(must=must) if self.vectors.vector_dimensions() else [],
                        key=lambda p: (p.payload.get("sample_id", ""), p.payload.get("encoder_key", "")))
        for point in points:
            payload = point.payload
            sample_id = payload["sample_id"]
            modality = payload["modality"]
            features = found.setdefault(sample_id, SampleFeatures(sample_id=sample_id))
            vector = point.vectors.get(modality)
            if vector is not None:
                features.vectors[modality] = vector
            features.encoders[modality] = payload.get("encoder", {})
            features.payload.update({k: v for k, v in payload.items()
                                     if k not in ("encoder", "modality", "encoder_key", "uri", "sha256")})
            features.payload[f"{modality}_uri"] = payload.get("uri")
            features.payload[f"{modality}_sha256"] = payload.get("sha256")
        return {sample_id: found.get(sample_id) for sample_id in sample_ids}

    def search(self, vector: Sequence[float], *, modality: str, limit: int = 5, source: str | None = None,
               encoder_key: str | None = None) -> list[SearchHit]:
        """Nearest samples to ``vector`` among the ``modality`` vectors (cosine)."""
        must: dict[str, Any] = {"modality": modality}
        if source:
            must["source"] = source
        if encoder_key:
            must["encoder_key"] = encoder_key
        return [SearchHit(sample_id=p.payload["sample_id"], score=float(p.score or 0.0), modality=modality,
                          payload=p.payload)
                for p in self.vectors.search(modality, vector, limit=limit, must=must)]

    def search_text(self, query: str, encoder: TextEncoder, *, limit: int = 5,
                    source: str | None = None) -> list[SearchHit]:
        """Samples whose captions are nearest to ``query``, embedded by ``encoder``.

        Only vectors made by the same encoder identity are compared.
        """
        vector = encoder.encode([query])[0]
        return self.search(vector.tolist(), modality="text", limit=limit, source=source,
                           encoder_key=encoder.identity.key)


def _is_vector(query: Any) -> bool:
    """A list/array of numbers (a query vector), as opposed to content to embed."""
    import numpy as np

    if isinstance(query, (str, bytes)):
        return False
    if isinstance(query, np.ndarray):
        return query.dtype.kind in "fiu"
    return isinstance(query, (list, tuple)) and bool(query) and all(isinstance(x, (int, float)) for x in query)
