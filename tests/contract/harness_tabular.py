"""Contract harness for the tabular connector: a folder of real annotation tables (Parquet, CSV, JSON Lines)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest


class TabularHarness:
    name = "tabular"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        photos: Path = request.getfixturevalue("photo_dir")
        root = tmp_path / "tables"
        (root / "images").mkdir(parents=True)
        for name in ("chelsea.png", "astronaut.png", "coffee.png"):
            shutil.copyfile(photos / name, root / "images" / name)
        pq.write_table(pa.table({
            "sample": ["cat-1", "astro-1", "coffee-1"],
            "taken_at": ["2026-01-01T09:00:00", "2026-01-01T10:00:00", "2026-01-01T10:00:00"],  # naive: Berlin
            "caption": ["A tabby cat.", "An astronaut in an orange suit.", "Latte art."],
            "image": ["images/chelsea.png", "images/astronaut.png", "images/coffee.png"],
            "patient": ["p1", "p2", None],
        }), root / "part-000.parquet")
        return {"path": str(root), "source": "contract_tabular", "id_column": "sample", "time_column": "taken_at",
                "text_column": "caption", "image_column": "image", "key_columns": {"patient_id": "patient"},
                "timezone": "Europe/Berlin"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["path"])
        # one row at exactly the committed high-water time (a tie, settled by id) and one later
        (root / "part-001.csv").write_text(
            "sample,taken_at,caption,image,patient\n"
            "coffee-2,2026-01-01T10:00:00,Another coffee.,images/coffee.png,p3\n"
            "cat-2,2026-01-02T08:00:00+00:00,\"The cat, again.\",images/chelsea.png,p1\n", encoding="utf-8")
        return {"coffee-2", "cat-2"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        root = Path(options["path"])
        (root / "part-002.csv").write_bytes(
            b"sample,taken_at,caption,image,patient\n"
            b"latin1,2026-02-01T00:00:00,caf\xe9 au lait,images/coffee.png,p4\n"  # not UTF-8
            b"notime,,A row without a time.,images/coffee.png,p4\n"
            b"badtime,yesterday,A row with a nonsense time.,images/coffee.png,p4\n"
            b"empty,2026-02-01T00:00:00,   ,images/coffee.png,p4\n"
            b"ragged,2026-02-01T00:00:00,too,many,fields,here\n")
        (root / "part-003.jsonl").write_text(
            '{"sample": "gone", "taken_at": "2026-02-02T00:00:00Z", "caption": "Image is missing.", '
            '"image": "images/deleted.png"}\n'
            '{"sample": "broken-json", "taken_at": \n', encoding="utf-8")
        (root / "part-004.parquet").write_bytes(b"PAR1 this is not really parquet")
        return {"latin1", "notime", "badtime", "empty", "ragged", "gone", f"{root}/part-003.jsonl#line2",
                f"file:{root}/part-004.parquet"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {**options, "path": str(Path(options["path"]) / "missing")},
            {**options, "path": str(Path(options["path"]) / "*.xlsx")},
            {**options, "timezone": "Not/AZone"},
            {**options, "format": "excel"},
            {k: v for k, v in options.items() if k != "id_column"},
        ]


HARNESS = TabularHarness()
