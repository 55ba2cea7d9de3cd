"""COCO-format annotated images: captions and boxes.

One or more COCO annotation files (``captions_*.json`` and/or ``instances_*.json``: ``images``,
``annotations``, ``categories``) plus the folder the images live in.  Each image becomes one
record: the image, its captions as the text (one per line, in annotation id order), its boxes
(``[x, y, width, height]`` in pixels, with the category name) in the metadata, and the image's
own slice of the annotation files as a JSON object, so what was ingested is kept exactly.

Incremental by image id: COCO-style datasets grow by appending images with higher ids.  Changed
annotations of existing images are picked up by a backfill run or a state reset.  Event time:
``date_captured`` (naive, read in ``timezone``), else the newest annotation file's mtime (UTC).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from connectors.media import check_image
from connectors.sdk import Connector, ConnectorConfig, Item, State, Window
from connectors.sdk.rows import zone_from_name
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import coerce_utc, from_timestamp, isoformat_z
from schemas.records import RawObject, SourceRecord


class CocoConfig(ConnectorConfig):
    """``annotations``: COCO JSON files; ``images_dir``: where ``file_name`` paths are relative to."""

    annotations: list[Path] = Field(min_length=1)
    images_dir: Path
    timezone: str = "UTC"
    require_caption: bool = True


@dataclass
class _Image:
    entry: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)


class CocoConnector(Connector[CocoConfig]):
    """Reads COCO annotation files once per listing; one item per image."""

    name = "coco"
    config_class = CocoConfig
    requires = ("PIL",)

    def __init__(self, config: CocoConfig) -> None:
        super().__init__(config)
        self.zone = zone_from_name(config.timezone)

    def check(self) -> None:
        for path in self.config.annotations:
            if not path.is_file():
                raise ConfigError(f"COCO annotation file {path} does not exist; fix the option 'annotations'",
                                  setting="annotations")
        if not self.config.images_dir.is_dir():
            raise ConfigError(f"images folder {self.config.images_dir} does not exist; fix the option 'images_dir'",
                              setting="images_dir")

    def _load(self) -> tuple[dict[int, _Image], dict[int, str], list[Item], datetime]:
        """Images by id, category names by id, problem items, and the annotation files' newest mtime."""
        images: dict[int, _Image] = {}
        categories: dict[int, str] = {}
        orphans: list[dict[str, Any]] = []
        problems: list[Item] = []
        newest = 0.0
        for path in self.config.annotations:
            newest = max(newest, path.stat().st_mtime)
            try:
                doc = json.loads(path.read_bytes())
                if not isinstance(doc, dict):
                    raise ValueError("the top level is not an object")
                for entry in doc.get("images") or []:
                    images.setdefault(int(entry["id"]), _Image(entry=entry))
                for category in doc.get("categories") or []:
                    categories[int(category["id"])] = str(category["name"])
                orphans.extend(doc.get("annotations") or [])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path} is not a COCO annotation file ({type(exc).__name__}: {exc}); fix or "
                                  "replace it", setting="annotations") from None
        for annotation in sorted(orphans, key=lambda a: int(a.get("id", 0))):
            image = images.get(int(annotation.get("image_id", -1)))
            if image is None:
                problems.append(Item(source_id=f"annotation/{annotation.get('id')}", ref={"raw": annotation},
                                     problem=f"annotation {annotation.get('id')} refers to image "
                                             f"{annotation.get('image_id')!r}, which no file lists"))
            else:
                image.annotations.append(annotation)
        return images, categories, problems, from_timestamp(newest)

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        self.check()
        images, _, problems, _ = self._load()
        items = [Item(source_id=f"image/{image_id}", cursor=image_id, ref={"image_id": image_id})
                 for image_id in sorted(images)]
        return [*problems, *(item for item in items if state.is_new(item))]

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        if item.problem is not None:
            raise BadRecordError(f"{item.problem}; fix the annotation file", source_id=item.source_id,
                                 payload=json.dumps(item.ref.get("raw"), sort_keys=True).encode())
        images, categories, _, newest = self._load()
        image = images.get(int(item.ref["image_id"]))
        slice_json = json.dumps({"image": image.entry if image else None,
                                 "annotations": image.annotations if image else []}, sort_keys=True).encode()

        def bad(reason: str) -> BadRecordError:
            return BadRecordError(f"image {item.ref['image_id']}: {reason}", source_id=item.source_id,
                                  payload=slice_json)

        if image is None:
            raise bad("no longer in the annotation files")
        name = str(image.entry.get("file_name", ""))
        path = self.config.images_dir / name
        if not name or not path.is_file():
            raise bad(f"image file {name!r} not found in {self.config.images_dir}")
        data = path.read_bytes()
        media_type, _ = check_image(name, data, source_id=item.source_id, zone=self.zone)
        width, height = int(image.entry.get("width") or 0), int(image.entry.get("height") or 0)
        captions, boxes = [], []
        for annotation in image.annotations:
            if "caption" in annotation:
                caption = str(annotation["caption"]).strip()
                if caption:
                    captions.append(caption)
            if "bbox" in annotation:
                boxes.append(self._box(annotation, categories, width, height, bad))
        if self.config.require_caption and not captions:
            raise bad("has no caption; add one or set require_caption=false")
        event_time, origin = newest, "annotation-file-mtime"
        if image.entry.get("date_captured"):
            try:
                event_time = coerce_utc(str(image.entry["date_captured"]), zone=self.zone, name="date_captured")
                origin = "date_captured"
            except ValueError as exc:
                raise bad(f"date_captured {image.entry['date_captured']!r} is not a time ({exc})") from None
        yield SourceRecord(
            source=self.source, source_id=item.source_id, event_time=event_time,
            objects=(RawObject("image", data, media_type), RawObject("annotation", slice_json, "application/json")),
            text="\n".join(captions) or None, keys={"coco_image_id": str(item.ref["image_id"])},
            metadata={"file_name": name, "width": width, "height": height, "captions": captions, "boxes": boxes,
                      "annotations_mtime": isoformat_z(newest)},
            event_time_origin=origin)

    @staticmethod
    def _box(annotation: dict[str, Any], categories: dict[int, str], width: int, height: int,
             bad: Any) -> dict[str, Any]:
        try:
            x, y, w, h = (float(v) for v in annotation["bbox"])
        except (TypeError, ValueError):
            raise bad(f"annotation {annotation.get('id')}: bbox {annotation.get('bbox')!r} is not "
                      "[x, y, width, height]") from None
        if w <= 0 or h <= 0 or x < 0 or y < 0 or (width and x + w > width + 1) or (height and y + h > height + 1):
            raise bad(f"annotation {annotation.get('id')}: bbox {[x, y, w, h]} lies outside the "
                      f"{width}x{height} image")
        category = categories.get(int(annotation.get("category_id", -1)))
        if category is None:
            raise bad(f"annotation {annotation.get('id')}: unknown category_id {annotation.get('category_id')!r}")
        return {"bbox": [x, y, w, h], "category": category, "iscrowd": int(annotation.get("iscrowd", 0) or 0)}
