"""An ingestion run's feature values: offline rows per registered view of the source, embedding views online."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feature_store.config import FeatureStoreConfig
from feature_store.manifest import write_table
from feature_store.object_store import open_object_store
from feature_store.offline import OfflineStore
from feature_store.registry import Registry
from feature_store.vector_store.versions import open_view_collections
from rosetta.pipelines.features import write_run_features
from schemas.arrow import embedding_schema, record_schema
from schemas.features import EncoderRef, FeatureDefinitions, FeatureView

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
WEIGHTS = "ab" * 32
DEFINITIONS = FeatureDefinitions.model_validate({
    "entities": [{"name": "sample", "join_keys": ["sample_id"]}, {"name": "device", "join_keys": ["device_id"]}],
    "feature_views": [
        {"name": "cam_text", "entities": ["sample"], "kind": "embedding", "source": "cams", "modality": "text",
         "encoder": {"kind": "hf-mean-pool", "name": "tiny", "revision": WEIGHTS}, "dimension": 3},
        {"name": "cam_meta", "entities": ["sample"], "kind": "metadata", "source": "cams",
         "features": [{"name": "event_time_origin", "dtype": "string"}, {"name": "exposure", "dtype": "float64"},
                      {"name": "image_media_type", "dtype": "string"}, {"name": "line", "dtype": "string"}]},
        {"name": "device_text", "entities": ["device"], "kind": "embedding", "source": "cams", "modality": "text",
         "encoder": {"kind": "hf-mean-pool", "name": "tiny", "revision": WEIGHTS}, "dimension": 3},
        {"name": "other_text", "entities": ["sample"], "kind": "embedding", "source": "elsewhere",
         "modality": "text", "encoder": {"kind": "hf-mean-pool", "name": "tiny", "revision": WEIGHTS},
         "dimension": 3},
    ]})


def _identity(revision: str = WEIGHTS, precision: str = "") -> str:
    key = f"tiny@{revision[:12]}" + (f"+{precision}" if precision else "")
    return json.dumps({"name": "tiny", "modality": "text", "revision": revision, "dimension": 3,
                       "preprocessing": "", "key": key})


def _stage(store: Any, run: str, rows: list[tuple[str, float, list[float], str]]) -> tuple[str, str]:
    """Staged records and text embeddings of one run: (sample, hours after T0, vector, encoder identity)."""
    records, embeddings = [], []
    for sample, hours, vector, identity in rows:
        when = T0 + timedelta(hours=hours)
        keys = {"device_id": "cam-1"} if sample != "s9" else {}
        records.append({"sample_id": sample, "source": "cams", "source_id": sample, "event_time": when,
                        "event_time_origin": "exif", "text": f"caption {sample}", "keys": json.dumps(keys),
                        "metadata": json.dumps({"exposure": 0.01 * hours, "line": "A"}),
                        "objects": json.dumps({"image": {"uri": f"s3://b/{sample}", "sha256": "00",
                                                         "media_type": "image/jpeg"}}),
                        "ingest_time": T0, "run_id": run})
        embeddings.append({"point_id": sample, "sample_id": sample, "modality": "text", "vector": vector,
                           "encoder": identity, "payload": json.dumps({"keys": keys}), "event_time": when})
    return (write_table(store, f"staging/{run}/records.parquet", pa.Table.from_pylist(records, record_schema())),
            write_table(store, f"staging/{run}/embeddings.parquet",
                        pa.Table.from_pylist(embeddings, embedding_schema())))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Any, FeatureStoreConfig]:
    config = FeatureStoreConfig.model_validate({"object_store": {"kind": "local", "root": tmp_path / "store"},
                                                "vector_store": {"path": tmp_path / "qdrant", "engine": "edge"}})
    store = open_object_store(config.object_store)
    Registry(store).apply(DEFINITIONS, resolve=False)
    return store, config


def _views(store: Any) -> dict[str, FeatureView]:
    return {v.name: v for v in Registry(store).views()}


def test_a_run_writes_each_view_of_its_source_offline_and_brings_embeddings_online(setup: Any) -> None:
    store, config = setup
    records, embeddings = _stage(store, "r1", [("s1", 0, [1, 0, 0], _identity()), ("s2", 1, [0, 1, 0], _identity()),
                                               ("s3", 2, [0, 0, 1], _identity(precision="int8")),
                                               ("s4", 3, [1, 1, 0], _identity(revision="cd" * 32))])
    result = write_run_features(store, config, "cams", "r1", T0, [records], [embeddings])["views"]
    views = _views(store)
    text, meta, device = views["cam_text"], views["cam_meta"], views["device_text"]
    assert set(result) == {text.versioned_name, meta.versioned_name, device.versioned_name}  # not other_text
    assert result[text.versioned_name]["offline_rows"] == 2  # s3 (int8) and s4 (other weights) left out
    assert result[text.versioned_name]["skipped"] == {"other_encoder": 2, "no_entity_key": 0, "wrong_dimension": 0}
    gate = result[text.versioned_name]["gate"]
    assert gate["success"] and gate["rows"] == 2 and gate["policy"] == "block"
    assert json.loads(store.read_bytes(store.key_for(gate["result_uri"])))["success"] is True
    assert result[text.versioned_name]["online_points"] == 2
    assert result[text.versioned_name]["live"].endswith(text.version)

    offline = OfflineStore.from_config(config.object_store)
    stored = offline.read(meta, ["sample_id"]).sort_by("sample_id").to_pylist()
    assert [(r["sample_id"], r["event_time_origin"], r["exposure"], r["image_media_type"], r["line"])
            for r in stored] == [("s1", "exif", 0.0, "image/jpeg", "A"), ("s2", "exif", 0.01, "image/jpeg", "A"),
                                 ("s3", "exif", 0.02, "image/jpeg", "A"), ("s4", "exif", 0.03, "image/jpeg", "A")]
    assert all(r["ingest_time"] == T0 for r in stored)
    # device entity: both samples are from cam-1; the later event (s2) is its online value
    assert offline.read(device, ["device_id"]).num_rows == 2
    with open_view_collections(config.vector_store) as collections:
        online = collections.get(device, ["cam-1"])["cam-1"]
        assert online is not None and online.vectors["text"] == pytest.approx([0, 1, 0])
        found = collections.get(text, ["s1", "s2", "s3"])
        assert found["s1"] is not None and found["s1"].payload["event_time"] == T0.isoformat()
        assert found["s3"] is None


def test_re_running_replaces_and_a_late_older_value_does_not_overwrite_a_newer_one(setup: Any) -> None:
    store, config = setup
    records, embeddings = _stage(store, "r1", [("s1", 5, [1, 0, 0], _identity())])
    first = write_run_features(store, config, "cams", "r1", T0, [records], [embeddings])
    again = write_run_features(store, config, "cams", "r1", T0, [records], [embeddings])
    assert first == again
    text = _views(store)["cam_text"]
    offline = OfflineStore.from_config(config.object_store)
    assert offline.read(text, ["sample_id"]).num_rows == 1

    # a later run brings an older observation of s1 (event 1 h, learned later): online keeps the 5 h value
    late_records, late_embeddings = _stage(store, "r2", [("s1", 1, [0, 0, 1], _identity())])
    write_run_features(store, config, "cams", "r2", T0 + timedelta(days=1), [late_records], [late_embeddings])
    assert offline.read(text, ["sample_id"]).num_rows == 2
    with open_view_collections(config.vector_store) as collections:
        online = collections.get(text, ["s1"])["s1"]
        assert online is not None and online.vectors["text"] == pytest.approx([1, 0, 0])


def test_records_without_the_entity_key_are_counted_not_written(setup: Any) -> None:
    store, config = setup
    records, embeddings = _stage(store, "r1", [("s9", 0, [1, 0, 0], _identity())])  # s9 has no device_id
    result = write_run_features(store, config, "cams", "r1", T0, [records], [embeddings])["views"]
    device = _views(store)["device_text"]
    assert result[device.versioned_name] == {"offline_rows": 0, "skipped": {"other_encoder": 0, "no_entity_key": 1}}


def test_a_source_without_views_is_left_alone(setup: Any) -> None:
    store, config = setup
    assert write_run_features(store, config, "unknown", "r1", T0, [], [])["views"] == {}


def test_an_encoder_made_only_the_vectors_of_its_weights_and_precision() -> None:
    ref = EncoderRef(kind="hf-mean-pool", name="tiny", revision=WEIGHTS)
    assert ref.made(json.loads(_identity()))
    assert not ref.made(json.loads(_identity(precision="int8")))
    assert not ref.made(json.loads(_identity(revision="cd" * 32)))
    int8 = ref.model_copy(update={"precision": "int8"})
    assert int8.made(json.loads(_identity(precision="int8"))) and not int8.made(json.loads(_identity()))
    view = {"name": "v", "entities": ["sample"], "kind": "embedding", "source": "s", "modality": "text",
            "dimension": 3}
    assert FeatureView.model_validate({**view, "encoder": ref.model_dump()}).version != \
        FeatureView.model_validate({**view, "encoder": int8.model_dump()}).version


def test_cli_materializes_publishes_and_rolls_back(setup: Any, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from rosetta.cli import main

    store, config = setup
    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(config.object_store.root))
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(config.vector_store.path))
    monkeypatch.setenv("ROSETTA_QDRANT_ENGINE", "edge")
    old = _views(store)["cam_text"]
    offline = OfflineStore.from_config(config.object_store)
    offline.write(old, ["sample_id"], pa.table({
        "sample_id": ["s1", "s2"], "event_time": pa.array([T0, T0 + timedelta(hours=30)], pa.timestamp("us", "UTC")),
        "embedding": pa.array([[1, 0, 0], [0, 1, 0]], pa.list_(pa.float32(), 3))}), "r1", ingest_time=T0)
    args = ["features", "materialize", "cam_text", "--start", "2026-05-01", "--end", "2026-05-03", "--publish"]
    assert main(args) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["chunks"], done["points"], done["replaced"]) == (2, 2, None)
    assert done["live"] == f"cam_text__{old.version}"

    # a new encoder: a new version, built beside the live one, swapped in, then rolled back
    definitions = DEFINITIONS.model_copy(deep=True)
    views = [v.model_copy(update={"encoder": v.encoder.model_copy(update={"revision": "cd" * 32})})
             if v.name == "cam_text" and v.encoder else v for v in definitions.feature_views]
    Registry(store).apply(FeatureDefinitions(entities=definitions.entities, feature_views=tuple(views)),
                          resolve=False)
    new = _views(store)["cam_text"]
    assert new.version != old.version
    offline.write(new, ["sample_id"], pa.table({
        "sample_id": ["s1"], "event_time": pa.array([T0], pa.timestamp("us", "UTC")),
        "embedding": pa.array([[0, 0, 1]], pa.list_(pa.float32(), 3))}), "r2", ingest_time=T0)
    assert main(["features", "materialize", "cam_text", "--start", "2026-05-01", "--end", "2026-05-02"]) == 0
    assert json.loads(capsys.readouterr().out)["points"] == 1
    with open_view_collections(config.vector_store) as collections:
        assert collections.live("cam_text") == f"cam_text__{old.version}"  # not swapped without publish
    assert main(["features", "publish", "cam_text"]) == 0
    swapped = json.loads(capsys.readouterr().out)
    assert (swapped["live"], swapped["previous"], swapped["points"]) == (f"cam_text__{new.version}",
                                                                         f"cam_text__{old.version}", 1)
    assert main(["features", "publish", "cam_text", "--version", old.version]) == 0
    assert json.loads(capsys.readouterr().out)["live"] == f"cam_text__{old.version}"
    assert main(["features", "search", "cam_text"]) == 2
    assert "give a text query or --image FILE" in capsys.readouterr().err


def test_the_embeddings_gate_blocks_broken_vectors_or_records_them_under_warn(setup: Any) -> None:
    from transforms.quality.gates import QualityGateError

    store, config = setup
    records, embeddings = _stage(store, "r1", [("s1", 0, [1, 0, 0], _identity()),
                                               ("s2", 1, [0.5, 0.5, 0], _identity()),  # not unit length
                                               ("s3", 2, [float("nan"), 0, 0], _identity()),
                                               ("s4", 3, [1, 0], _identity())])  # 2 of 3 dimensions
    text = _views(store)["cam_text"]
    offline = OfflineStore.from_config(config.object_store)
    with pytest.raises(QualityGateError, match=r"embeddings/cam_text@v\w+ quality gate failed .* nothing of this run"):
        write_run_features(store, config, "cams", "r1", T0, [records], [embeddings])
    assert offline.read(text, ["sample_id"]).num_rows == 0
    assert list(store.list("quality/"))  # the failed result is stored all the same

    result = write_run_features(store, config, "cams", "r1", T0, [records], [embeddings],
                                embeddings_policy="warn")["views"][text.versioned_name]
    assert result["gate"]["success"] is False and result["gate"]["policy"] == "warn"
    assert set(result["gate"]["failed"]) == {"expect_column_values_to_be_between(norm)",
                                             "expect_column_values_to_be_in_set(finite)",
                                             "expect_column_values_to_be_between(dimension)"}
    assert result["skipped"]["wrong_dimension"] == 1 and result["offline_rows"] == 3
