from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connectors.sdk import State, Window, load_connector
from rosetta.core.errors import BadRecordError

LOG = """2026-03-04T10:15:00.120+01:00 INFO device=cam-7 part=A17 shot taken
2026-03-04 10:15:01,500 WARN device=cam-7 "exposure high"
Traceback (most recent call last):
  File "press.py", line 3
2026-03-04T09:15:02Z ERROR camera=cam-9 lens dirty
"""


def test_entries_with_continuations_keys_and_utc_times(tmp_path: Path) -> None:
    (tmp_path / "line-3.log").write_text(LOG)
    connector = load_connector("machine_logs", {"root": str(tmp_path), "source": "logs",
                                                "timezone": "Europe/Berlin"})
    items = list(connector.list_items(State(), Window()))
    assert [i.source_id for i in items] == ["line-3.log:1", "line-3.log:2", "line-3.log:5"]
    records = [next(iter(connector.fetch(i))) for i in items]
    assert [r.event_time for r in records] == [datetime(2026, 3, 4, 9, 15, 0, 120000, tzinfo=UTC),
                                               datetime(2026, 3, 4, 9, 15, 1, 500000, tzinfo=UTC),
                                               datetime(2026, 3, 4, 9, 15, 2, tzinfo=UTC)]
    assert records[0].keys == {"device_id": "cam-7"} and records[0].metadata["tokens"]["part"] == "A17"
    assert records[1].text is not None and records[1].text.endswith('  File "press.py", line 3')
    assert records[2].keys == {"device_id": "cam-9"}
    state = State().advance(items)
    with (tmp_path / "line-3.log").open("a") as handle:
        handle.write("2026-03-04T09:16:00Z INFO device=cam-7 next shot\n")
    assert [i.source_id for i in connector.list_items(state, Window())] == ["line-3.log:6"]


def test_bad_lines_are_bad_records(tmp_path: Path) -> None:
    (tmp_path / "press.log").write_bytes(b"orphan text before any entry\n"
                                         b"2026-03-04T10:15:00Z ok device=p1\n"
                                         b"2026-13-45T10:15:00Z impossible date\n"
                                         b"2026-03-04T10:16:00Z caf\xe9 latin-1\n")
    connector = load_connector("machine_logs", {"root": str(tmp_path), "source": "logs"})
    outcome = {}
    for item in connector.list_items(State(), Window()):
        try:
            list(connector.fetch(item))
            outcome[item.source_id] = "ok"
        except BadRecordError as exc:
            outcome[item.source_id] = exc.reason
    assert outcome["press.log:2"] == "ok"
    assert "no timestamp" in outcome["press.log:1"]
    assert "is not a time" in outcome["press.log:3"]
    assert "not UTF-8" in outcome["press.log:4"]
