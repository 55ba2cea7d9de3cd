"""The offline store on a real S3 server (SeaweedFS): the same files and answers as on a local folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from feature_store.object_store import object_store_config_from_url, open_object_store
from feature_store.offline import OfflineStore
from feature_store.retrieval import get_historical_features
from schemas.features import Entity, FeatureView

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def test_write_read_and_retrieve_through_s3(s3_options: dict[str, object], bucket_name: str) -> None:
    config = object_store_config_from_url(f"s3://{bucket_name}/features", **s3_options)
    open_object_store(config).check()  # creates the bucket
    store = OfflineStore.from_config(config)
    view = FeatureView.model_validate({"name": "emb", "entities": ["sample"], "kind": "embedding", "source": "d",
                                       "modality": "image", "dimension": 2,
                                       "encoder": {"kind": "efficientnet-lite0", "name": "e", "revision": "r"}})
    times = [T0, T0 + timedelta(hours=1)]  # two days
    values = pa.table({"sample_id": ["s1", "s1"], "event_time": pa.array(times, TS),
                       "embedding": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))})
    assert store.write(view, ["sample_id"], values, "run-7", ingest_time=T0) == 2
    assert store.write(view, ["sample_id"], values, "run-7", ingest_time=T0) == 2  # idempotent
    keys = sorted(open_object_store(config).list("offline/emb"))
    assert len(keys) == 2 and all(k.endswith("part-run-7.parquet") for k in keys)
    assert store.read(view, ["sample_id"]).num_rows == 2
    entity_rows = pa.table({"sample_id": ["s1", "s1"],
                            "event_timestamp": pa.array([T0 + timedelta(minutes=5), T0 + timedelta(hours=2)], TS)})
    out = get_historical_features(store, [view], {"sample": Entity(name="sample", join_keys=("sample_id",))},
                                  entity_rows)
    assert out.column("embedding").to_pylist() == [[1.0, 0.0], [0.0, 1.0]]
