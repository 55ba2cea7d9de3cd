from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest


class ImageFolderHarness:
    name = "image_folder"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        photos: Path = request.getfixturevalue("photo_dir")
        root = tmp_path / "folder"
        root.mkdir()
        for stem in ("chelsea", "astronaut", "coffee"):
            for path in photos.glob(f"{stem}.*"):
                shutil.copyfile(path, root / path.name)
        return {"root": str(root), "source": "contract_images"}

    def _bump(self, path: Path) -> None:
        stamp = max(p.stat().st_mtime_ns for p in path.parent.iterdir()) + 10**9
        os.utime(path, ns=(stamp, stamp))

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        (root / "second_cat.png").write_bytes((root / "chelsea.png").read_bytes())
        (root / "second_cat.txt").write_text("The same tabby cat again.")
        self._bump(root / "second_cat.png")
        self._bump(root / "second_cat.txt")
        return {"second_cat"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        (root / "cut.png").write_bytes((root / "coffee.png").read_bytes()[:5000])
        (root / "cut.txt").write_text("truncated picture")
        (root / "mute.png").write_bytes((root / "coffee.png").read_bytes())
        (root / "mute.txt").write_bytes(b"\xff\xfe\x00not utf-8")
        (root / "orphan.txt").write_text("a caption with no picture")
        for name in ("cut.png", "cut.txt", "mute.png", "mute.txt", "orphan.txt"):
            self._bump(root / name)
        return {"cut", "mute", "orphan"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "root": str(Path(options["root"]) / "missing")},
            {**options, "timezone": "Not/AZone"},
            {**options, "source": "has spaces"},
        ]


HARNESS = ImageFolderHarness()
