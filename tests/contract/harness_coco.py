from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.coco_helpers import write_dataset

BASE = [(1, "chelsea.png"), (2, "astronaut.png"), (3, "coffee.png")]


class CocoHarness:
    name = "coco"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "coco"
        self.photos: Path = request.getfixturevalue("photo_dir")
        write_dataset(root, self.photos, BASE, boxes={1: [{"bbox": [5, 5, 50, 50], "category_id": 1}]})
        self.images = list(BASE)
        self.boxes: dict[int, list[dict[str, Any]]] = {1: [{"bbox": [5, 5, 50, 50], "category_id": 1}]}
        return {"source": "contract_coco", "annotations": [str(root / "captions.json"), str(root / "instances.json")],
                "images_dir": str(root / "images")}

    def _rewrite(self, options: dict[str, Any]) -> None:
        write_dataset(Path(options["images_dir"]).parent, self.photos, self.images, boxes=self.boxes)

    def add_new(self, options: dict[str, Any]) -> set[str]:
        self.images.append((10, "rocket.jpg"))
        self._rewrite(options)
        return {"image/10"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        self.images += [(20, "missing.jpg"), (21, "moon.png")]
        self.boxes[21] = [{"bbox": [0, 0, 5000, 5], "category_id": 2}]
        self._rewrite(options)
        return {"image/20", "image/21"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**options, "images_dir": options["images_dir"] + "-missing"},
                {**options, "annotations": [options["annotations"][0] + ".missing"]},
                {**options, "annotations": []}]


HARNESS = CocoHarness()
