"""Offline store (Parquet per view version, partitioned by day) and point-in-time retrieval against a
brute-force reference: event-time and bitemporal semantics, TTL, ties, nulls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_store.offline import OfflineStore, view_schema
from feature_store.retrieval import get_historical_features, point_in_time
from rosetta.core.errors import ConfigError
from schemas.features import Entity, FeatureView

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # near midnight: rows land in two daily partitions
TS = pa.timestamp("us", tz="UTC")
ENTITIES = {"sample": Entity(name="sample", join_keys=("sample_id",))}


def _t(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


# -- the reference ------------------------------------------------------------------------------------
def _reference(entities: list[dict[str, Any]], values: list[dict[str, Any]], bitemporal: bool,
               ttl: int | None) -> list[int]:
    out = []
    for e in entities:
        if e["key"] is None or e["ts"] is None:
            out.append(-1)
            continue
        best, best_rank = -1, None
        for i, v in enumerate(values):
            if v["key"] != e["key"] or v["event"] is None or v["ingest"] is None:
                continue
            if v["event"] > e["ts"] or (bitemporal and v["ingest"] > e["ts"]):
                continue
            rank = (v["event"], v["ingest"], i)
            if best_rank is None or rank > best_rank:
                best, best_rank = i, rank
        if best >= 0 and ttl is not None and e["ts"] - values[best]["event"] > ttl:
            best = -1
        out.append(best)
    return out


KEY = st.sampled_from(["a", "b", "c", None])
MINUTE = st.one_of(st.integers(0, 20), st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.fixed_dictionaries({"key": KEY, "event": MINUTE, "ingest": MINUTE}), max_size=12),
       entities=st.lists(st.fixed_dictionaries({"key": KEY, "ts": MINUTE}), max_size=8),
       bitemporal=st.booleans(), ttl=st.one_of(st.none(), st.integers(0, 6)))
def test_point_in_time_matches_the_reference(values: list[dict[str, Any]], entities: list[dict[str, Any]],
                                             bitemporal: bool, ttl: int | None) -> None:
    entity_table = pa.table({"sample_id": pa.array([e["key"] for e in entities], pa.string()),
                             "ts": pa.array([_t(e["ts"]) for e in entities], TS)})
    value_table = pa.table({"sample_id": pa.array([v["key"] for v in values], pa.string()),
                            "event_time": pa.array([_t(v["event"]) for v in values], TS),
                            "ingest_time": pa.array([_t(v["ingest"]) for v in values], TS)})
    got = point_in_time(entity_table, value_table, ["sample_id"], bitemporal=bitemporal,
                        ttl=None if ttl is None else timedelta(minutes=ttl))
    assert got.tolist() == _reference(entities, values, bitemporal, ttl)


# -- the offline store --------------------------------------------------------------------------------
def _view(**changes: Any) -> FeatureView:
    return FeatureView.model_validate({"name": "emb", "entities": ["sample"], "kind": "embedding", "source": "demo",
                                       "modality": "text", "encoder": {"kind": "hf-mean-pool", "name": "m",
                                                                       "revision": "r1"}, "dimension": 3, **changes})


def _meta_view(**changes: Any) -> FeatureView:
    return FeatureView.model_validate({"name": "meta", "entities": ["sample"], "kind": "metadata", "source": "demo",
                                       "features": [{"name": "width", "dtype": "int64"},
                                                    {"name": "label", "dtype": "string"}], **changes})


def _values(rows: list[tuple[str, int, int, list[float]]]) -> pa.Table:
    return pa.table({"sample_id": [r[0] for r in rows], "event_time": pa.array([_t(r[1]) for r in rows], TS),
                     "ingest_time": pa.array([_t(r[2]) for r in rows], TS),
                     "embedding": pa.array([r[3] for r in rows], pa.list_(pa.float32(), 3))})


def test_offline_store_partitions_by_day_and_rewrites_a_run_in_place(tmp_path: Path) -> None:
    store = OfflineStore.from_config(_local(tmp_path))
    view = _view()
    rows = _values([("s1", 0, 1, [1, 0, 0]), ("s1", 150, 151, [0, 1, 0]), ("s2", 30, 200, [0, 0, 1])])
    assert store.write(view, ["sample_id"], rows, "run-1") == 3
    assert store.write(view, ["sample_id"], rows, "run-1") == 3  # the same run again: same files, no duplicates
    days = sorted(p.name for p in Path(store.path(view)).iterdir())
    assert days == ["date=2026-03-01", "date=2026-03-02"]
    assert store.read(view, ["sample_id"]).num_rows == 3
    assert store.read(view, ["sample_id"], start=_t(120)).column("sample_id").to_pylist() == ["s1"]
    file = next(Path(store.path(view)).rglob("*.parquet"))
    assert pq.read_schema(file).field("embedding").type == pa.list_(pa.float32(), 3)
    assert store.read(_view(dimension=4), ["sample_id"]).num_rows == 0  # another version: its own dataset
    assert store.read(view, ["sample_id"]).schema == view_schema(view, ["sample_id"])


def test_offline_store_refuses_values_that_do_not_fit_with_the_fix_named(tmp_path: Path) -> None:
    store = OfflineStore.from_config(_local(tmp_path))
    with pytest.raises(ConfigError, match="have \\[2\\] dimensions, the view says 3"):
        store.write(_view(), ["sample_id"], pa.table({
            "sample_id": ["s"], "event_time": pa.array([T0], TS), "embedding": [[1.0, 2.0]]}), "r")
    with pytest.raises(ConfigError, match="lack column\\(s\\) event_time"):
        store.write(_view(), ["sample_id"], pa.table({"sample_id": ["s"], "embedding": [[1.0, 2.0, 3.0]]}), "r")
    with pytest.raises(ConfigError, match="timezone-aware"):
        store.write(_view(), ["sample_id"], pa.table({
            "sample_id": ["s"], "event_time": pa.array([datetime(2026, 1, 1)]), "embedding": [[1.0, 2.0, 3.0]]}), "r")
    with pytest.raises(ConfigError, match="cannot name a file"):
        store.write(_view(), ["sample_id"], _values([]), "../x")


def test_historical_features_are_point_in_time_correct_per_view(tmp_path: Path) -> None:
    store = OfflineStore.from_config(_local(tmp_path))
    emb, meta = _view(), _meta_view(ttl="PT30M")
    store.write(emb, ["sample_id"], _values([
        ("s1", 0, 0, [1, 0, 0]),
        ("s1", 10, 50, [0, 1, 0]),  # about minute 10, but only known at minute 50
        ("s2", 5, 5, [0, 0, 1])]), "r1")
    store.write(meta, ["sample_id"], pa.table({
        "sample_id": ["s1", "s2"], "event_time": pa.array([_t(0), _t(0)], TS), "width": [640, 800],
        "label": ["cat", "dog"]}), "r1", ingest_time=_t(0))
    entity_rows = pa.table({"sample_id": ["s1", "s1", "s2", "s3", None],
                            "event_timestamp": pa.array([_t(20), _t(60), _t(40), _t(60), _t(60)], TS),
                            "label_for_training": [1, 2, 3, 4, 5]})
    out = get_historical_features(store, [emb, meta], ENTITIES, entity_rows)
    assert out.column_names == ["sample_id", "event_timestamp", "label_for_training", "embedding", "width", "label"]
    assert out.column("label_for_training").to_pylist() == [1, 2, 3, 4, 5]  # the rows, in their own order
    assert out.column("embedding").to_pylist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], None, None]
    assert out.column("width").to_pylist() == [640, None, None, None, None]  # ttl 30 min: stale after minute 30
    event_only = get_historical_features(store, [emb], ENTITIES, entity_rows, bitemporal=False,
                                         features=["emb:embedding"], full_feature_names=True)
    assert event_only.column("emb__embedding").to_pylist()[0] == [0, 1, 0]  # event-time semantics sees it early

    by_range = get_historical_features(store, [emb, meta], ENTITIES, start=_t(0), end=_t(24 * 60))
    assert by_range.column("sample_id").to_pylist() == ["s1", "s1", "s2"]
    assert by_range.column("embedding").to_pylist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ConfigError, match="has no feature 'height'"):
        get_historical_features(store, [meta], ENTITIES, entity_rows, features=["meta:height"])
    with pytest.raises(ConfigError, match="clashes"):
        get_historical_features(store, [meta], ENTITIES, entity_rows.append_column("width", pa.array([0] * 5)))


def _local(tmp_path: Path) -> Any:
    from feature_store.object_store import object_store_config_from_url

    return object_store_config_from_url(str(tmp_path / "store"))


def test_feature_store_resolves_views_from_the_registry_and_pins_versions(tmp_path: Path) -> None:
    from feature_store import FeatureStore
    from feature_store.config import FeatureStoreConfig
    from feature_store.vector_store.config import VectorStoreConfig
    from schemas.features import FeatureDefinitions

    fs = FeatureStore(FeatureStoreConfig(object_store=_local(tmp_path),
                                         vector_store=VectorStoreConfig(path=tmp_path / "qdrant")))
    old, new = _view(), _view(encoder={"kind": "hf-mean-pool", "name": "m", "revision": "r2"})
    for view, vector in ((old, [1.0, 0.0, 0.0]), (new, [0.0, 0.0, 1.0])):
        fs.registry.apply(FeatureDefinitions(entities=tuple(ENTITIES.values()), feature_views=(view,)),
                          resolve=False)
        fs.offline.write(view, ["sample_id"], _values([("s1", 0, 0, vector)]), "r1")
    rows = pa.table({"sample_id": ["s1"], "event_timestamp": pa.array([_t(5)], TS)})
    assert fs.get_historical_features(rows, features=["emb"]).column("embedding").to_pylist() == [[0, 0, 1]]
    pinned = fs.get_historical_features(rows, features=["emb:embedding"], versions={"emb": old.version})
    assert pinned.column("embedding").to_pylist() == [[1, 0, 0]]
    with pytest.raises(ConfigError, match="no feature view 'nope'"):
        fs.get_historical_features(rows, features=["nope"])
    fs.close()
