"""FeatureStore over the registry's views: online lookup by entity key and search by vector, text or image
through the encoder that built the live version (real MiniLM and EfficientNet weights, Qdrant local mode)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from feature_store import FeatureStore
from feature_store.config import FeatureStoreConfig
from feature_store.manifest import write_table
from feature_store.registry import Registry
from rosetta.core.errors import ConfigError
from rosetta.pipelines.features import write_run_features
from schemas.arrow import embedding_schema
from schemas.features import FeatureDefinitions
from transforms.encoders.config import load_view_encoder

pytestmark = pytest.mark.slow

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
CAPTIONS = {"coffee": "a cup of hot coffee on a saucer", "rocket": "a rocket launching into the sky",
            "cat": "a tabby cat sleeping on a sofa", "bridge": "an old stone bridge over a river"}


PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


def _photo(folder: Path, stem: str) -> Path:
    return next(p for p in folder.glob(f"{stem}.*") if p.suffix != ".txt")


def _definitions(text_revision: str | None = None) -> FeatureDefinitions:
    return FeatureDefinitions.model_validate({
        "entities": [{"name": "sample", "join_keys": ["sample_id"]}],
        "feature_views": [
            {"name": "caption_text", "entities": ["sample"], "kind": "embedding", "source": "photos",
             "modality": "text", "dimension": 384,
             "encoder": {"kind": "hf-mean-pool", "name": "all-MiniLM-L6-v2", "revision": text_revision}},
            {"name": "photo_image", "entities": ["sample"], "kind": "embedding", "source": "photos",
             "modality": "image", "dimension": 1280,
             "encoder": {"kind": "efficientnet-lite0", "name": "efficientnet-lite0"}}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, photo_dir: Path) -> FeatureStoreConfig:
    """A store whose two views were written and brought online by write_run_features."""
    from PIL import Image

    root = tmp_path_factory.mktemp("views")
    config = FeatureStoreConfig.model_validate({"object_store": {"kind": "local", "root": root / "store"},
                                                "vector_store": {"path": root / "qdrant"}})
    with FeatureStore(config) as fs:
        Registry(fs.objects).apply(_definitions())
        views = {v.name: v for v in fs.registry.views()}
        rows = []
        for modality, view in (("text", views["caption_text"]), ("image", views["photo_image"])):
            assert view.encoder is not None
            encoder = load_view_encoder(view.encoder)
            if modality == "text":
                items = list(CAPTIONS)
                vectors = encoder.encode([CAPTIONS[k] for k in items])
            else:
                items = list(PHOTOS)
                vectors = encoder.encode([Image.open(_photo(photo_dir, k)) for k in items])
            identity = json.dumps(encoder.identity.as_payload())
            rows += [{"point_id": f"{k}-{modality}", "sample_id": f"photos/{k}", "modality": modality,
                      "vector": v.tolist(), "encoder": identity, "payload": json.dumps({"keys": {}}),
                      "event_time": T0} for k, v in zip(items, vectors, strict=True)]
        uri = write_table(fs.objects, "staging/r1/embeddings.parquet", pa.Table.from_pylist(rows, embedding_schema()))
        write_run_features(fs.objects, config, "photos", "r1", T0, [], [uri])
    return config


def test_online_lookup_by_entity_key_shares_the_client_with_the_sample_collection(served: FeatureStoreConfig) -> None:
    with FeatureStore(served) as fs:
        fs.get_online_features(["photos/coffee"])  # opens the local-mode client first
        found = fs.get_view_features("caption_text", ["photos/coffee", "photos/nothing"])
        point = found["photos/coffee"]
        assert point is not None and len(point.vectors["text"]) == 384
        assert point.payload["sample_id"] == "photos/coffee" and point.payload["event_time"] == T0.isoformat()
        assert found["photos/nothing"] is None


def test_search_by_text_through_the_views_encoder(served: FeatureStoreConfig) -> None:
    with FeatureStore(served) as fs:
        hits = fs.search_view("caption_text", "espresso in a mug", limit=2)
        assert hits[0].payload["sample_id"] == "photos/coffee"
        assert hits[0].score > hits[1].score
        cat = fs.get_view_features("caption_text", ["photos/cat"])["photos/cat"]
        assert cat is not None
        by_vector = fs.search_view("caption_text", cat.vectors["text"], limit=1, filters={"source": "photos"})
        assert by_vector[0].payload["sample_id"] == "photos/cat" and by_vector[0].score == pytest.approx(1, abs=1e-4)
        assert fs.search_view("caption_text", cat.vectors["text"], filters={"source": "elsewhere"}) == []


def test_search_by_image_through_the_views_encoder(served: FeatureStoreConfig, photo_dir: Path) -> None:
    with FeatureStore(served) as fs:
        for name in ("rocket", "chelsea"):
            hits = fs.search_view("photo_image", _photo(photo_dir, name).read_bytes(), limit=4)
            assert hits[0].payload["sample_id"] == f"photos/{name}" and hits[0].score == pytest.approx(1, abs=1e-3)
            assert len(hits) == 4 and hits[1].score < 0.99


def test_wrong_queries_name_the_fix(served: FeatureStoreConfig) -> None:
    with FeatureStore(served) as fs:
        with pytest.raises(ConfigError, match="holds image embeddings; query it with an image or a vector"):
            fs.search_view("photo_image", "a cat")
        with pytest.raises(ConfigError, match=r"a 3-dimensional query .* 384 dimensions"):
            fs.search_view("caption_text", [0.1, 0.2, 0.3])
        with pytest.raises(ConfigError, match="no published version"):
            fs.get_view_features("unknown_view", ["x"])


def test_other_weights_on_this_machine_are_refused_for_a_text_query(tmp_path: Path) -> None:
    config = FeatureStoreConfig.model_validate({"object_store": {"kind": "local", "root": tmp_path / "store"},
                                                "vector_store": {"path": tmp_path / "qdrant", "engine": "edge"}})
    with FeatureStore(config) as fs:
        Registry(fs.objects).apply(_definitions(text_revision="ff" * 32), resolve=False)
        view = fs.registry.view("caption_text")
        fs.collections.create(view)
        fs.collections.publish(view)
        with pytest.raises(ConfigError, match="the feature view was built with ffffffffffff"):
            fs.search_view("caption_text", "a cat")


def test_cli_search_by_text_and_by_image_file(served: FeatureStoreConfig, photo_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from rosetta.cli import main

    monkeypatch.setenv("ROSETTA_OBJECT_STORE_URL", str(served.object_store.root))  # type: ignore[union-attr]
    monkeypatch.setenv("ROSETTA_QDRANT_PATH", str(served.vector_store.path))
    assert main(["features", "search", "caption_text", "a kitten napping", "--limit", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[0]["sample_id"] == "photos/cat" and lines[0]["score"] > lines[1]["score"]
    assert main(["features", "search", "photo_image", "--image", str(_photo(photo_dir, "coffee")),
                 "--filter", "source=photos", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["sample_id"] == "photos/coffee"
