from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import load_connector
from tests.mqtt_helpers import event, jpeg, publish, unique


class MqttEventsHarness:
    name = "mqtt_events"

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        options = {"source": "contract_mqtt", "topic": f"{unique('contract')}/events",
                   "client_id": unique("rosetta-contract"), "spool_dir": str(tmp_path / "spool"),
                   "drain_seconds": 10, "idle_seconds": 0.6}
        load_connector(self.name, options).drain()  # open the persistent session
        publish(options["topic"], event("a", device="cam-1"), event("b", device="cam-2"), event("c"))
        return options

    def add_new(self, options: dict[str, Any]) -> set[str]:
        publish(options["topic"], event("d", device="cam-9"))
        return {"event/d"}

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        publish(options["topic"], event("cut", image=jpeg()[:100]), event("late", timestamp="soon"))
        return {"event/cut", "event/late"}

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**options, "port": 1}, {**options, "topic": ""}]


HARNESS = MqttEventsHarness()
