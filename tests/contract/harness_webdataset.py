from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest


def write_shard(path: Path, members: list[tuple[str, bytes]], *, mtime: int = 1_767_225_600) -> Path:
    """A plain tar shard holding ``members`` (name, bytes) in order; member mtimes in POSIX seconds."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


class WebDatasetHarness:
    name = "webdataset"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        photos: Path = request.getfixturevalue("photo_dir")
        root = tmp_path / "shards"
        root.mkdir()
        write_shard(root / "shard-000000.tar", [
            ("chelsea.png", (photos / "chelsea.png").read_bytes()),
            ("chelsea.txt", (photos / "chelsea.txt").read_bytes()),
            ("astronaut.png", (photos / "astronaut.png").read_bytes()),
            ("astronaut.txt", (photos / "astronaut.txt").read_bytes()),
            ("coffee.png", (photos / "coffee.png").read_bytes()),
            ("coffee.json", json.dumps({"caption": (photos / "coffee.txt").read_text(),
                                        "event_time": "2025-06-01T08:00:00+02:00"}).encode()),
        ])
        return {"root": str(root), "source": "contract_webdataset"}

    def _bump(self, path: Path) -> None:
        stamp = max(p.stat().st_mtime_ns for p in path.parent.iterdir()) + 10**9
        os.utime(path, ns=(stamp, stamp))

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        with tarfile.open(root / "shard-000000.tar") as tar:
            image = tar.extractfile("chelsea.png").read()  # type: ignore[union-attr]
        self._bump(write_shard(root / "shard-000001.tar", [("second_cat.png", image),
                                                          ("second_cat.txt", b"The same tabby cat again.")]))
        return {"shard-000001/second_cat"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["root"])
        with tarfile.open(root / "shard-000000.tar") as tar:
            png = tar.extractfile("coffee.png").read()  # type: ignore[union-attr]
        self._bump(write_shard(root / "broken.tar", [
            ("cut.png", png[:5000]), ("cut.txt", b"truncated picture"),
            ("blank.png", png), ("blank.txt", b"  \n"),
            ("garbled.png", png), ("garbled.json", b'{"caption": "no closing brace"'),
            ("orphan.txt", b"a caption with no picture"),
        ]))
        # A shard whose upload stopped half way through its second sample.
        whole = write_shard(root / "partial.tar", [("first.png", png), ("first.txt", b"coffee"),
                                                   ("second.png", png), ("second.txt", b"coffee again")])
        data = whole.read_bytes()
        whole.write_bytes(data[: len(png) + 1024 + len(png) // 2])
        self._bump(whole)
        return {"broken/cut", "broken/blank", "broken/garbled", "broken/orphan", "partial/second",
                "partial/_unreadable_tail"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "root": str(Path(options["root"]) / "missing")},
            {**options, "pattern": ""},
            {**options, "max_member_bytes": 0},
            {**options, "source": "has spaces"},
        ]


HARNESS = WebDatasetHarness()
