"""Build a small real COCO dataset (captions + instances) from the demo photos."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "person"}, {"id": 3, "name": "cup"}]


def image_entry(image_id: int, file_name: str, folder: Path, **extra: Any) -> dict[str, Any]:
    with Image.open(folder / file_name) as image:
        width, height = image.size
    return {"id": image_id, "file_name": file_name, "width": width, "height": height, **extra}


def write_dataset(root: Path, photos: Path, images: list[tuple[int, str]], *,
                  captions: dict[int, list[str]] | None = None, boxes: dict[int, list[dict[str, Any]]] | None = None,
                  extra_annotations: list[dict[str, Any]] = ()) -> tuple[Path, Path]:  # type: ignore[assignment]
    """Copy the photos into root/images and write captions.json + instances.json; returns both paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for image_id, name in images:
        if (photos / name).exists() and not (root / "images" / name).exists():
            shutil.copyfile(photos / name, root / "images" / name)
        entries.append(image_entry(image_id, name, root / "images", date_captured="2013-11-14 11:18:45")
                       if (root / "images" / name).exists() else {"id": image_id, "file_name": name})
    caption_anns, next_id = [], 1
    for image_id, texts in (captions or {i: [f"photo number {i}"] for i, _ in images}).items():
        for text in texts:
            caption_anns.append({"id": next_id, "image_id": image_id, "caption": text})
            next_id += 1
    box_anns = []
    for image_id, items in (boxes or {}).items():
        for item in items:
            box_anns.append({"id": next_id, "image_id": image_id, "iscrowd": 0, **item})
            next_id += 1
    captions_path, instances_path = root / "captions.json", root / "instances.json"
    stamp = max([p.stat().st_mtime_ns for p in root.glob("*.json")] + [0]) + 10**9
    captions_path.write_text(json.dumps({"images": entries, "annotations": caption_anns + list(extra_annotations)}))
    instances_path.write_text(json.dumps({"images": entries, "annotations": box_anns, "categories": CATEGORIES}))
    for path in (captions_path, instances_path):
        os.utime(path, ns=(stamp, stamp))
    return captions_path, instances_path
