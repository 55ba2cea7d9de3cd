"""MQTT camera events against the real Mosquitto broker on this machine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.devservices.ports import free_port_block
from tests.mqtt_helpers import event, jpeg, publish, unique

pytestmark = pytest.mark.integration


def _options(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"source": "cams", "topic": f"{unique('factory')}/shots", "client_id": unique("rosetta-test"),
            "spool_dir": str(tmp_path / "spool"), "drain_seconds": 10, "idle_seconds": 0.6, **extra}


def test_session_survives_between_runs_and_nothing_is_read_twice(tmp_path: Path) -> None:
    options = _options(tmp_path)
    connector = load_connector("mqtt_events", options)
    assert list(connector.list_items(State(), Window())) == []  # first run opens the persistent session
    publish(options["topic"], event("e1", device="cam-1"), event("e2", device="cam-2"))  # while nobody listens
    items = list(connector.list_items(State(), Window()))
    assert sorted(i.source_id for i in items) == ["event/e1", "event/e2"]
    records = {i.source_id: next(iter(connector.fetch(i))) for i in items}
    first = records["event/e1"]
    assert first.keys == {"device_id": "cam-1"}
    assert first.event_time == datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    assert first.objects[0].data == jpeg() and first.objects[0].media_type == "image/jpeg"
    assert first.metadata["topic"] == options["topic"]

    state = State().advance(items)
    publish(options["topic"], event("e3"))
    again = list(connector.list_items(state, Window()))
    assert [i.source_id for i in again] == ["event/e3"]
    assert len(list(Path(options["spool_dir"]).glob("*.msg"))) == 1  # committed messages left the spool


def test_redelivered_message_keeps_its_id(tmp_path: Path) -> None:
    options = _options(tmp_path)
    connector = load_connector("mqtt_events", options)
    connector.drain()
    publish(options["topic"], event("same"), event("same"))
    ids = [i.source_id for i in connector.list_items(State(), Window())]
    assert ids == ["event/same", "event/same"]  # the pipeline's hash check stores it once


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "not JSON"),
    (b'["a", "list"]', "not a JSON object"),
    (event("x", device=""), "missing device_id"),
    (event("x", timestamp="yesterday"), "not ISO 8601"),
    (event("x", timestamp="2026-03-04T10:15:00"), "not ISO 8601 with an offset"),
    (event("x", image=b"GIF89a..."), "neither JPEG nor PNG"),
    (event("x", image=jpeg()[:200]), "truncated"),
])
def test_malformed_events_are_bad_records(tmp_path: Path, payload: bytes, reason: str) -> None:
    options = _options(tmp_path)
    connector = load_connector("mqtt_events", options)
    connector.drain()
    publish(options["topic"], payload)
    [item] = connector.list_items(State(), Window())
    with pytest.raises(BadRecordError, match=reason) as err:
        list(connector.fetch(item))
    assert err.value.payload == payload


def test_unreachable_broker_is_a_config_error(tmp_path: Path) -> None:
    connector = load_connector("mqtt_events", _options(tmp_path, port=free_port_block(1)))
    with pytest.raises(ConfigError, match="host and port"):
        connector.check()
