"""PyTorch datasets over a retrieval result (sharding, seeded shuffles, lazy objects) and WebDataset export."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader

from feature_store.object_store import object_store_config_from_url, open_object_store
from feature_store.training import FeatureIterableDataset, FeatureMapDataset, export_webdataset, shard_order
from rosetta.core.errors import ConfigError

N = 23


def _result(tmp_path: Path) -> tuple[pa.Table, Any]:
    """A retrieval result: ids, a 4-dim embedding, a label, and the URI of each example's raw object."""
    config = object_store_config_from_url(str(tmp_path / "store"))
    store = open_object_store(config)
    uris = [store.put(f"raw bytes of example {i}".encode()).uri for i in range(N)]
    vectors = pa.array([[float(i), 1.0, 2.0, 3.0] for i in range(N)], pa.list_(pa.float32(), 4))
    table = pa.table({"sample_id": [f"s{i:03d}" for i in range(N)], "embedding": vectors,
                      "label": pa.array(list(range(N)), pa.int64()), "image_uri": uris})
    return table, config


def test_shards_cover_every_row_once_and_the_order_follows_seed_and_epoch() -> None:
    seen = np.concatenate([shard_order(N, seed=7, epoch=0, shuffle=True, rank=r, world=2, worker=w, workers=3)
                           for r in range(2) for w in range(3)])
    assert sorted(seen.tolist()) == list(range(N))
    again = shard_order(N, seed=7, epoch=0, shuffle=True, rank=1, world=2, worker=2, workers=3)
    assert again.tolist() == shard_order(N, seed=7, epoch=0, shuffle=True, rank=1, world=2, worker=2,
                                         workers=3).tolist()
    assert shard_order(N, seed=7, epoch=1, shuffle=True, rank=0, world=1, worker=0, workers=1).tolist() != \
        shard_order(N, seed=7, epoch=0, shuffle=True, rank=0, world=1, worker=0, workers=1).tolist()
    assert shard_order(N, seed=7, epoch=0, shuffle=False, rank=0, world=1, worker=0, workers=1).tolist() == \
        list(range(N))
    with pytest.raises(ConfigError, match="out of range"):
        shard_order(N, seed=0, epoch=0, shuffle=False, rank=2, world=2, worker=0, workers=1)


def test_iterable_dataset_in_dataloader_workers_across_two_ranks(tmp_path: Path) -> None:
    table, config = _result(tmp_path)
    labels: list[int] = []
    for rank in range(2):
        dataset = FeatureIterableDataset(table, features=["embedding", "label"], object_column="image_uri",
                                         object_store=config, seed=3, rank=rank, world_size=2)
        loader = DataLoader(dataset, batch_size=4, num_workers=2)
        for batch in loader:
            assert batch["embedding"].shape[1:] == (4,) and batch["embedding"].dtype == torch.float32
            for label, vector, data in zip(batch["label"].tolist(), batch["embedding"], batch["object"], strict=True):
                assert vector[0].item() == label and data == f"raw bytes of example {label}".encode()
            labels += batch["label"].tolist()
    assert sorted(labels) == list(range(N))  # every example once over 2 ranks x 2 workers


def test_epochs_reshuffle_and_objects_are_fetched_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table, config = _result(tmp_path)
    dataset = FeatureIterableDataset(table, object_column="image_uri", object_store=config, seed=1)
    fetched: list[str] = []
    from feature_store.object_store.local import LocalObjectStore

    original = LocalObjectStore.read_bytes

    def counting(self: Any, key: str) -> bytes:
        fetched.append(key)
        return bytes(original(self, key))

    monkeypatch.setattr(LocalObjectStore, "read_bytes", counting)
    iterator = iter(dataset)
    first = next(iterator)
    assert len(fetched) == 1 and first["object"].startswith(b"raw bytes")  # one example, one fetch
    epoch0 = [first["label"].item()] + [e["label"].item() for e in iterator]
    dataset.set_epoch(1)
    epoch1 = [e["label"].item() for e in dataset]
    assert sorted(epoch0) == sorted(epoch1) == list(range(N)) and epoch0 != epoch1
    assert len(fetched) == 2 * N


def test_map_dataset_and_clear_errors(tmp_path: Path) -> None:
    table, config = _result(tmp_path)
    dataset = FeatureMapDataset(table, features=["label"], object_column="image_uri", object_store=config)
    assert len(dataset) == N and dataset[5]["label"].item() == 5 and dataset[5]["object"].endswith(b"example 5")
    with pytest.raises(IndexError):
        dataset[N]
    with pytest.raises(ConfigError, match="no column 'width'"):
        FeatureIterableDataset(table, features=["width"])
    with pytest.raises(ConfigError, match="object_column needs object_store"):
        FeatureIterableDataset(table, object_column="image_uri")


def test_webdataset_export_is_byte_identical_for_the_same_request(tmp_path: Path) -> None:
    table, config = _result(tmp_path)
    lineage = {"feature_views": {"emb": "v0123456789ab"}, "encoder": {"name": "m", "revision": "r"},
               "interval": ["2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]}
    first = export_webdataset(table, tmp_path / "a", key_column="sample_id", lineage=lineage,
                              features=["embedding", "label"], object_column="image_uri", object_store=config,
                              object_extension="jpg", shard_rows=10)
    shuffled = table.take(pa.array(np.random.default_rng(0).permutation(N)))
    second = export_webdataset(shuffled, tmp_path / "b", key_column="sample_id", lineage=lineage,
                               features=["embedding", "label"], object_column="image_uri", object_store=config,
                               object_extension="jpg", shard_rows=10)
    assert first == second and [s["examples"] for s in first["shards"]] == [10, 10, 3]
    for shard in first["shards"]:
        a, b = (tmp_path / "a" / shard["name"]).read_bytes(), (tmp_path / "b" / shard["name"]).read_bytes()
        assert a == b and hashlib.sha256(a).hexdigest() == shard["sha256"]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["lineage"] == lineage
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == ["s000.embedding.npy", "s000.features.json", "s000.jpg"]
        vector = np.load(io.BytesIO(tar.extractfile("s000.embedding.npy").read()))  # type: ignore[union-attr]
        assert vector.tolist() == [0.0, 1.0, 2.0, 3.0]
        assert json.loads(tar.extractfile("s000.features.json").read()) == {"label": 0}  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="must be unique"):
        export_webdataset(pa.concat_tables([table, table]), tmp_path / "c", key_column="sample_id", lineage={})
