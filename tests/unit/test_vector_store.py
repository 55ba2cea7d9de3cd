"""Qdrant local mode (qdrant-client's own engine): the same API a server URL uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_store.ids import point_id
from feature_store.vector_store import QdrantVectorStore, VectorPoint, VectorStoreConfig
from rosetta.core.errors import ConfigError, RetriableError


def _points(n: int, modality: str, dim: int) -> list[VectorPoint]:
    out = []
    for i in range(n):
        vector = [0.0] * dim
        vector[i % dim] = 1.0
        out.append(VectorPoint(point_id=point_id(f"s/{i}", modality, "enc@1"), modality=modality, vector=vector,
                               payload={"sample_id": f"s/{i}", "modality": modality, "source": "s",
                                        "encoder_key": "enc@1"}))
    return out


def test_upsert_is_idempotent_and_lookups_work(tmp_path: Path) -> None:
    with QdrantVectorStore(VectorStoreConfig(path=tmp_path / "q", collection="c")) as store:
        assert store.count() == 0
        store.ensure_collection({"image": 8, "text": 4})
        store.ensure_collection({"image": 8, "text": 4})
        assert store.upsert(_points(5, "image", 8) + _points(5, "text", 4)) == 10
        assert store.count() == 10
        store.upsert(_points(5, "image", 8))
        assert store.count() == 10
        found = list(store.scroll(must={"sample_id": ["s/1", "s/2"], "modality": "image"}))
        assert sorted(p.payload["sample_id"] for p in found) == ["s/1", "s/2"]
        assert all(len(p.vectors["image"]) == 8 for p in found)
        hits = store.search("text", [0.0, 1.0, 0.0, 0.0], limit=2)
        assert hits[0].payload["sample_id"] == "s/1" and hits[0].score == pytest.approx(1.0)
        assert store.vector_dimensions() == {"image": 8, "text": 4}


def test_encoder_with_other_dimension_is_refused(tmp_path: Path) -> None:
    with QdrantVectorStore(VectorStoreConfig(path=tmp_path / "q", collection="c")) as store:
        store.ensure_collection({"image": 8})
        with pytest.raises(ConfigError, match="ROSETTA_QDRANT_COLLECTION"):
            store.ensure_collection({"image": 16})


def test_second_process_on_a_local_path_gets_a_clear_retriable_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = VectorStoreConfig(path=tmp_path / "q", collection="c")
    with QdrantVectorStore(config) as store:
        store.ensure_collection({"image": 8})
        code = ("from pathlib import Path; from feature_store.vector_store import *; "
                f"QdrantVectorStore(VectorStoreConfig(path=Path({str(tmp_path / 'q')!r}))).count()")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert RetriableError.__name__ in result.stderr and "ROSETTA_QDRANT_URL" in result.stderr
