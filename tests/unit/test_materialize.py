"""Offline -> online materialization in time chunks: latest value wins, resumable, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feature_store.materialize import materialize, materialized_until
from feature_store.object_store import object_store_config_from_url, open_object_store
from feature_store.offline import OfflineStore
from feature_store.vector_store.config import VectorStoreConfig
from feature_store.vector_store.versions import ViewCollections, open_view_collections
from rosetta.core.errors import ConfigError
from schemas.features import FeatureView

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
VIEW = FeatureView.model_validate({"name": "emb", "entities": ["sample"], "kind": "embedding", "source": "demo",
                                   "modality": "image", "dimension": 2,
                                   "encoder": {"kind": "efficientnet-lite0", "name": "e", "revision": "r"}})


@pytest.fixture(params=["client", "edge"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _setup(tmp_path: Path, engine: str = "client") -> tuple[Any, OfflineStore, ViewCollections]:
    config = object_store_config_from_url(str(tmp_path / "store"))
    offline = OfflineStore.from_config(config)
    rows = [("s1", 0, [1.0, 0.0]), ("s1", 30, [0.0, 1.0]), ("s2", 5, [1.0, 1.0]), ("s2", 40, [1.0, -1.0]),
            ("s3", 70, [-1.0, 0.0])]  # hours after T0: three days
    offline.write(VIEW, ["sample_id"], pa.table({
        "sample_id": [r[0] for r in rows], "event_time": pa.array([T0 + timedelta(hours=r[1]) for r in rows], TS),
        "embedding": pa.array([r[2] for r in rows], pa.list_(pa.float32(), 2))}), "r1", ingest_time=T0)
    return open_object_store(config), offline, open_view_collections(VectorStoreConfig(path=tmp_path / "qdrant",
                                                                                       engine=engine))


def test_latest_value_per_entity_chunk_by_chunk_and_resumable(tmp_path: Path, engine: str) -> None:
    store, offline, views = _setup(tmp_path, engine)
    with views:
        first = materialize(VIEW, ["sample_id"], offline, views, store, start=T0, end=T0 + timedelta(days=2))
        assert first["chunks"] == 2 and materialized_until(store, VIEW) == T0 + timedelta(days=2)
        views.publish(VIEW)
        found = views.get(VIEW, ["s1", "s2", "s3"])
        assert found["s1"] is not None and found["s1"].vectors["image"] == pytest.approx([0.0, 1.0])
        assert found["s2"] is not None and found["s2"].vectors["image"][1] < 0  # hour 40, the later value
        assert found["s3"] is None  # day 3 not materialized yet

        resumed = materialize(VIEW, ["sample_id"], offline, views, store, start=T0, end=T0 + timedelta(days=3))
        assert resumed["chunks"] == 1 and resumed["from"] == (T0 + timedelta(days=2)).isoformat()
        again = materialize(VIEW, ["sample_id"], offline, views, store, start=T0, end=T0 + timedelta(days=3))
        assert again["chunks"] == 0 and again["skipped"]
        before = {k: p.vectors if p else None for k, p in views.get(VIEW, ["s1", "s2", "s3"]).items()}
        forced = materialize(VIEW, ["sample_id"], offline, views, store, start=T0, end=T0 + timedelta(days=3),
                             force=True)
        assert forced["chunks"] == 3
        assert {k: p.vectors if p else None for k, p in views.get(VIEW, ["s1", "s2", "s3"]).items()} == before
        assert views.count(VIEW) == 3


def test_bad_ranges_are_refused(tmp_path: Path) -> None:
    store, offline, views = _setup(tmp_path)
    with views, pytest.raises(ConfigError, match="start < end"):
        materialize(VIEW, ["sample_id"], offline, views, store, start=T0, end=T0)
