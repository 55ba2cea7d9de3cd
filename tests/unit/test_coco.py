from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError
from tests.coco_helpers import write_dataset

IMAGES = [(42, "chelsea.png"), (7, "astronaut.png"), (9, "coffee.png")]


def _connector(root: Path, **options: Any):  # type: ignore[no-untyped-def]
    return load_connector("coco", {"source": "coco", "annotations": [str(root / "captions.json"),
                                                                     str(root / "instances.json")],
                                   "images_dir": str(root / "images"), **options})


def test_captions_and_boxes_become_one_record_per_image(tmp_path: Path, photo_dir: Path) -> None:
    write_dataset(tmp_path, photo_dir, IMAGES,
                  captions={42: ["A tabby cat.", "Close-up of a cat's face."], 7: ["An astronaut."], 9: ["Coffee."]},
                  boxes={42: [{"bbox": [10, 20, 100, 120], "category_id": 1}]})
    connector = _connector(tmp_path, timezone="America/New_York")
    items = list(connector.list_items(State(), Window()))
    assert [i.source_id for i in items] == ["image/7", "image/9", "image/42"]  # by id, the cursor
    [record] = connector.fetch(items[2])
    assert record.text == "A tabby cat.\nClose-up of a cat's face."
    assert record.metadata["boxes"] == [{"bbox": [10.0, 20.0, 100.0, 120.0], "category": "cat", "iscrowd": 0}]
    assert record.event_time == datetime(2013, 11, 14, 16, 18, 45, tzinfo=UTC)
    image, annotation = record.objects
    assert image.data == (photo_dir / "chelsea.png").read_bytes() and image.media_type == "image/png"
    kept = json.loads(annotation.data)
    assert kept["image"]["id"] == 42 and len(kept["annotations"]) == 3
    assert list(connector.list_items(State().advance(items), Window())) == []


@pytest.mark.parametrize(("boxes", "extra", "reason"), [
    ({42: [{"bbox": [10, 20, -5, 5], "category_id": 1}]}, [], "outside"),
    ({42: [{"bbox": [0, 0, 10000, 10], "category_id": 1}]}, [], "outside"),
    ({42: [{"bbox": "10,20,5,5", "category_id": 1}]}, [], r"not \[x, y, width, height\]"),
    ({42: [{"bbox": [1, 1, 5, 5], "category_id": 99}]}, [], "unknown category_id 99"),
])
def test_bad_annotations_quarantine_their_image(tmp_path: Path, photo_dir: Path, boxes: Any, extra: Any,
                                                reason: str) -> None:
    write_dataset(tmp_path, photo_dir, IMAGES, boxes=boxes)
    connector = _connector(tmp_path)
    item = next(i for i in connector.list_items(State(), Window()) if i.source_id == "image/42")
    with pytest.raises(BadRecordError, match=reason) as err:
        list(connector.fetch(item))
    assert json.loads(err.value.payload or b"{}")["image"]["id"] == 42


def test_missing_image_orphan_annotation_and_no_caption(tmp_path: Path, photo_dir: Path) -> None:
    write_dataset(tmp_path, photo_dir, [*IMAGES, (50, "gone.jpg")], captions={42: ["cat"], 7: ["astronaut"], 50: ["x"]},
                  extra_annotations=[{"id": 999, "image_id": 12345, "caption": "lost"}])
    connector = _connector(tmp_path)
    outcomes: dict[str, str] = {}
    for item in connector.list_items(State(), Window()):
        try:
            list(connector.fetch(item))
            outcomes[item.source_id] = "ok"
        except BadRecordError as exc:
            outcomes[item.source_id] = exc.reason
    assert outcomes["image/42"] == "ok" and outcomes["image/7"] == "ok"
    assert "not found" in outcomes["image/50"]
    assert "has no caption" in outcomes["image/9"]
    assert "which no file lists" in outcomes["annotation/999"]


def test_broken_annotation_file_is_a_config_error(tmp_path: Path, photo_dir: Path) -> None:
    write_dataset(tmp_path, photo_dir, IMAGES)
    (tmp_path / "instances.json").write_text("{truncated")
    with pytest.raises(ConfigError, match=r"instances\.json"):
        list(_connector(tmp_path).list_items(State(), Window()))
