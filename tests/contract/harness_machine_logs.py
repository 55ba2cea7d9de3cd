from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class MachineLogsHarness:
    name = "machine_logs"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        root = tmp_path / "logs"
        root.mkdir()
        (root / "cam-1.log").write_text("2026-03-04T10:00:00Z INFO device=cam-1 start\n"
                                        "2026-03-04T10:00:05Z INFO device=cam-1 shot 1\n")
        (root / "press.log").write_text("2026-03-04T10:00:01Z WARN pressure high\n  detail line\n")
        return {"root": str(root), "source": "contract_logs"}

    def add_new(self, options: dict[str, Any]) -> set[str]:
        with (Path(options["root"]) / "cam-1.log").open("a") as handle:
            handle.write("2026-03-04T10:01:00Z INFO device=cam-1 shot 2\n")
        return {"cam-1.log:3"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        (Path(options["root"]) / "broken.log").write_bytes(b"no timestamp here\n2026-03-04T10:02:00Z \xff\xfe\n")
        return {"broken.log:1", "broken.log:2"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**options, "root": options["root"] + "-missing"}, {**options, "timezone": "Atlantis/Capital"}]


HARNESS = MachineLogsHarness()
