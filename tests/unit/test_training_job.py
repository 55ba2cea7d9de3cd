"""The downstream model job: a projection head trained from the feature store, evaluated, stored with its lineage;
incremental fine-tuning with replay."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from feature_store import FeatureStore
from feature_store.config import FeatureStoreConfig
from rosetta.core.errors import ConfigError
from rosetta.pipelines.training import NotEnoughNewData, ProjectionSpec, held_out, recall_at_k, train_projection
from schemas.features import FeatureDefinitions

T0 = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = ProjectionSpec(image_view="img", text_view="txt", dimension=16, epochs=150, fine_tune_epochs=40,
                      holdout=0.25, k=3, batch_size=64)


def _store(tmp_path: Path) -> FeatureStore:
    config = FeatureStoreConfig.model_validate({"object_store": {"kind": "local", "root": tmp_path / "store"},
                                                "vector_store": {"path": tmp_path / "qdrant", "engine": "edge"}})
    fs = FeatureStore(config)
    fs.registry.apply(FeatureDefinitions.model_validate({
        "entities": [{"name": "sample", "join_keys": ["sample_id"]}],
        "feature_views": [
            {"name": "img", "entities": ["sample"], "kind": "embedding", "source": "s", "modality": "image",
             "dimension": 24, "encoder": {"kind": "efficientnet-lite0", "name": "e", "revision": "aa"}},
            {"name": "txt", "entities": ["sample"], "kind": "embedding", "source": "s", "modality": "text",
             "dimension": 12, "encoder": {"kind": "hf-mean-pool", "name": "t", "revision": "bb"}}]}), resolve=False)
    return fs


def _write(fs: FeatureStore, first: int, count: int, run: str, *, ingest: datetime, seed: int = 7) -> None:
    """``count`` samples whose text vector is a fixed linear map of a latent their image vector also encodes."""
    rng = np.random.default_rng(seed)
    to_image, to_text = rng.normal(size=(8, 24)), rng.normal(size=(8, 12))
    latent = np.random.default_rng(first + 1000).normal(size=(count, 8))
    image = latent @ to_image + 0.05 * np.random.default_rng(first).normal(size=(count, 24))
    text = latent @ to_text
    ids = [f"s{first + i:04d}" for i in range(count)]
    times = pa.array([T0 + timedelta(minutes=i) for i in range(count)], pa.timestamp("us", "UTC"))
    for name, vectors, dim in (("img", image, 24), ("txt", text, 12)):
        view = fs.registry.view(name)
        fs.offline.write(view, ["sample_id"], pa.table({
            "sample_id": ids, "event_time": times,
            "embedding": pa.array(vectors.astype(np.float32).tolist(), pa.list_(pa.float32(), dim))}), run,
            ingest_time=ingest)


def test_full_training_learns_the_pairing_and_writes_the_model_with_its_lineage(tmp_path: Path) -> None:
    import torch

    with _store(tmp_path) as fs:
        _write(fs, 0, 200, "r1", ingest=T0)
        summary = train_projection(fs, "proj", SPEC, run_id="run-1", as_of=T0 + timedelta(days=1))
        assert summary["mode"] == "full" and summary["pairs"] == 200 and summary["parent"] is None
        assert summary["train_pairs"] + summary["held_out_pairs"] == 200 and summary["held_out_pairs"] > 20
        before, after = summary["recall@3_before"], summary["recall@3"]
        assert after["image_to_text"] > 0.6 and after["image_to_text"] > before["image_to_text"] + 0.3
        assert after["text_to_image"] > 0.6 and summary["loss_last"] < summary["loss_first"]
        img, txt = fs.registry.view("img"), fs.registry.view("txt")
        assert summary["feature_views"] == [img.versioned_name, txt.versioned_name]
        assert summary["encoders"]["img"]["revision"] == "aa"
        assert summary["data_interval"]["as_of"] == (T0 + timedelta(days=1)).isoformat()
        lineage = json.loads(fs.objects.read_bytes(summary["model_key"].replace("model.pt", "lineage.json")))
        assert lineage["dataset_sha256"] == summary["dataset_sha256"]
        state = torch.load(io.BytesIO(fs.objects.read_bytes(summary["model_key"])), weights_only=True)
        assert state["state_dict"]["image.weight"].shape == (16, 24)

        again = train_projection(fs, "proj", SPEC, run_id="run-1", as_of=T0 + timedelta(days=1))
        assert again["recall@3"] == after and again["dataset_sha256"] == summary["dataset_sha256"]  # deterministic
        assert again["mode"] == "full"  # re-running run-1 does not make it its own parent


def test_pairs_known_only_after_the_run_are_not_used(tmp_path: Path) -> None:
    with _store(tmp_path) as fs:
        _write(fs, 0, 100, "r1", ingest=T0)
        _write(fs, 100, 100, "r2", ingest=T0 + timedelta(days=3))  # learned later
        summary = train_projection(fs, "proj", SPEC, run_id="run-1", as_of=T0 + timedelta(days=1))
        assert summary["pairs"] == 100


def test_incremental_fine_tunes_on_new_pairs_with_replay_and_skips_without_new_data(tmp_path: Path) -> None:
    with _store(tmp_path) as fs:
        _write(fs, 0, 160, "r1", ingest=T0)
        first = train_projection(fs, "proj", SPEC, run_id="run-1", as_of=T0 + timedelta(days=1))
        with pytest.raises(NotEnoughNewData, match="0 new training pair"):
            train_projection(fs, "proj", SPEC, run_id="run-2", as_of=T0 + timedelta(days=2))
        _write(fs, 160, 40, "r3", ingest=T0 + timedelta(days=2))
        second = train_projection(fs, "proj", SPEC, run_id="run-3", as_of=T0 + timedelta(days=3))
        new_train = sum(not held_out(f"s{i:04d}", SPEC.holdout) for i in range(160, 200))
        assert second["mode"] == "incremental" and second["parent"]["run_id"] == "run-1"
        assert second["new_pairs"] == new_train and second["replayed_pairs"] == new_train
        assert second["train_pairs"] == 2 * new_train and second["epochs"] == SPEC.fine_tune_epochs
        assert second["recall@3"]["image_to_text"] > 0.6  # held-out set now includes the new samples
        assert second["recall@3"]["image_to_text"] >= first["recall@3"]["image_to_text"] - 0.15
        full = train_projection(fs, "proj", SPEC.model_copy(update={"mode": "full"}), run_id="run-4",
                                as_of=T0 + timedelta(days=3))
        assert full["mode"] == "full" and full["train_pairs"] == 200 - full["held_out_pairs"]


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    with _store(tmp_path) as fs, pytest.raises(ConfigError, match=r"0 training pair.*ingest more data first"):
        train_projection(fs, "proj", SPEC, run_id="run-1", as_of=T0)


def test_recall_at_k_counts_the_own_partner() -> None:
    eye = np.eye(4, dtype=np.float32)
    assert recall_at_k(eye, eye, 1) == {"image_to_text": 1.0, "text_to_image": 1.0}
    shifted = np.roll(eye, 1, axis=0)
    assert recall_at_k(eye, shifted, 1) == {"image_to_text": 0.0, "text_to_image": 0.0}
    assert recall_at_k(eye, shifted, 4)["image_to_text"] == 1.0


def test_the_split_is_stable_and_near_the_share() -> None:
    ids = [f"sample-{i}" for i in range(4000)]
    share = sum(held_out(s, 0.2) for s in ids) / len(ids)
    assert 0.17 < share < 0.23 and [held_out(s, 0.2) for s in ids[:50]] == [held_out(s, 0.2) for s in ids[:50]]
    assert not any(held_out(s, 0.0) for s in ids)


