"""The view-collections contract, run against both engines (qdrant-client local mode and the embedded
Qdrant Edge engine): build a version beside the live one, swap the alias atomically, roll back, drop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feature_store.vector_store.config import VectorStoreConfig
from feature_store.vector_store.versions import ViewCollections, ViewPoint, collection_name, open_view_collections
from rosetta.core.errors import ConfigError
from schemas.features import FeatureView


def _view(revision: str, dimension: int = 3) -> FeatureView:
    return FeatureView.model_validate({"name": "text_emb", "entities": ["sample"], "kind": "embedding",
                                       "source": "demo", "modality": "text", "dimension": dimension,
                                       "encoder": {"kind": "hf-mean-pool", "name": "m", "revision": revision}})


def _points(direction: int, n: int = 6) -> list[ViewPoint]:
    points = []
    for i in range(n):
        vector = [0.0, 0.0, 0.0]
        vector[direction] = 1.0
        vector[(direction + 1) % 3] = i / 10
        points.append(ViewPoint(key=f"s{i}", vector=vector, payload={"source": "a" if i % 2 else "b"}))
    return points


@pytest.fixture(params=["client", "edge"])
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewCollections]:
    with open_view_collections(VectorStoreConfig(path=tmp_path / "qdrant", engine=request.param)) as opened:
        yield opened


def test_a_new_version_is_built_beside_the_live_one_and_swapped_in(views: ViewCollections) -> None:
    blue, green = _view("r1"), _view("r2")
    views.create(blue)
    assert views.upsert(blue, _points(0)) == 6
    assert views.upsert(blue, _points(0)) == 6  # deterministic ids: a re-run replaces
    assert views.publish(blue) is None and views.live("text_emb") == collection_name(blue)
    assert views.count(blue) == 6

    views.create(green, quantize=True)
    views.upsert(green, _points(1)[:3])  # half built: readers still see blue
    hit = views.search(blue, [1.0, 0.0, 0.0], limit=1)[0]
    assert hit.payload["key"] == "s0" and hit.score == pytest.approx(1.0)
    views.upsert(green, _points(1)[3:])
    assert views.publish(green) == collection_name(blue)
    assert views.live("text_emb") == collection_name(green)
    assert views.get(green, ["s2", "nope"])["s2"].vectors["text"][1] == pytest.approx(1 / (1 + 0.04) ** 0.5)
    assert views.get(green, ["nope"])["nope"] is None
    filtered = views.search(green, [0.0, 1.0, 0.0], limit=10, must={"source": "a"})
    assert sorted(p.payload["key"] for p in filtered) == ["s1", "s3", "s5"]
    exact = views.search(green, [0.0, 1.0, 0.0], limit=2, must={"source": "a"}, exact=True)
    assert [p.payload["key"] for p in exact] == [p.payload["key"] for p in filtered[:2]]
    assert [p.score for p in exact] == pytest.approx([p.score for p in filtered[:2]], abs=1e-3)
    assert views.versions("text_emb") == sorted([collection_name(blue), collection_name(green)])

    with pytest.raises(ConfigError, match="live version"):
        views.drop(green)
    views.publish(blue)  # roll back
    assert views.live("text_emb") == collection_name(blue)
    views.publish(green)
    views.drop(blue)
    assert views.versions("text_emb") == [collection_name(green)]


def test_wrong_shapes_and_unbuilt_versions_are_refused(views: ViewCollections) -> None:
    view = _view("r1")
    with pytest.raises(ConfigError, match="has no collection yet"):
        views.publish(view)
    views.create(view)
    with pytest.raises(ConfigError, match="4-dimensional vector"):
        views.upsert(view, [ViewPoint(key="x", vector=[1.0, 0.0, 0.0, 0.0])])
    metadata: Any = FeatureView.model_validate({"name": "m", "entities": ["sample"], "kind": "metadata",
                                                "source": "demo"})
    with pytest.raises(ConfigError, match="not an embedding view"):
        views.create(metadata)
