"""Machine and event logs: timestamped text lines, the text side of camera-based inspection.

A folder of ``*.log`` files.  Each line that starts with a timestamp opens a record; lines that
do not (stack traces, wrapped messages) continue the record above.  ``key=value`` tokens in a
line become metadata, and the configured ones become entity keys (``device=cam-7`` ->
``device_id``).  The file name is the fallback device id.

Incremental by the record's own time (ISO 8601 UTC string; logs are written in time order);
records with the same time are told apart by id (``<file>:<line number>``).  Timestamps
without an offset are read in ``timezone``, the machine's clock zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pydantic import Field

from connectors.sdk import Connector, ConnectorConfig, Item, State, Window
from connectors.sdk.rows import zone_from_name
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import coerce_utc, isoformat_z
from schemas.records import RawObject, SourceRecord

#: ``2026-03-04T10:15:00.123+01:00``, ``2026-03-04 10:15:00,123``, ``2026-03-04T10:15:00Z`` at line start.
TIMESTAMP = re.compile(
    r"^\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)\]?\s+(?P<rest>.*)$")
TOKEN = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>\"[^\"]*\"|\S+)")


class MachineLogsConfig(ConnectorConfig):
    """``key_tokens`` maps a ``key=value`` token name to the entity key it fills."""

    root: Path
    pattern: str = "*.log"
    timezone: str = "UTC"
    key_tokens: dict[str, str] = Field(default_factory=lambda: {"device": "device_id", "camera": "device_id"})
    max_record_bytes: int = Field(default=64 * 1024, ge=64)


class MachineLogsConnector(Connector[MachineLogsConfig]):
    """One record per timestamped log entry (with its continuation lines)."""

    name = "machine_logs"
    config_class = MachineLogsConfig

    def __init__(self, config: MachineLogsConfig) -> None:
        super().__init__(config)
        self.zone = zone_from_name(config.timezone)

    def check(self) -> None:
        if not self.config.root.is_dir():
            raise ConfigError(f"log folder {self.config.root} is not a directory; set the option 'root'",
                              setting="root")

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        self.check()
        items = []
        for path in sorted(self.config.root.glob(self.config.pattern)):
            for item in self._entries(path):
                if item.problem is not None or (state.is_new(item) and (
                        not window.bounded or window.contains(datetime.fromisoformat(str(item.ref["time"]))))):
                    items.append(item)
        return sorted(items, key=lambda i: (str(i.cursor or ""), i.source_id))

    def _entries(self, path: Path) -> list[Item]:
        rel = path.relative_to(self.config.root).as_posix()
        entries: list[Item] = []
        current: dict[str, object] | None = None
        lines: list[str] = []

        def close() -> None:
            if current is not None:
                text = "\n".join(lines)
                if len(text.encode()) > self.config.max_record_bytes:
                    entries.append(Item(source_id=str(current["id"]), ref={"raw": text[:2000]},
                                        problem=f"entry is over {self.config.max_record_bytes} bytes"))
                else:
                    entries.append(Item(source_id=str(current["id"]), cursor=str(current["cursor"]),
                                        ref={"time": current["time"], "text": text, "file": rel}))

        for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                close()
                current, lines = None, []
                entries.append(Item(source_id=f"{rel}:{number}", ref={"raw": raw.decode("latin-1")},
                                    problem=f"line {number} is not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            match = TIMESTAMP.match(line)
            if match is None:
                if current is None:
                    if line.strip():
                        entries.append(Item(source_id=f"{rel}:{number}", ref={"raw": line},
                                            problem=f"line {number} has no timestamp and follows no entry"))
                    continue
                lines.append(line)
                continue
            close()
            try:
                moment = coerce_utc(match["ts"].replace(",", "."), zone=self.zone, name="timestamp")
            except ValueError as exc:
                current, lines = None, []
                entries.append(Item(source_id=f"{rel}:{number}", ref={"raw": line},
                                    problem=f"line {number}: timestamp {match['ts']!r} is not a time ({exc})"))
                continue
            current = {"id": f"{rel}:{number}", "time": moment.isoformat(), "cursor": isoformat_z(moment)}
            lines = [match["rest"]]
        close()
        return entries

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        if item.problem is not None:
            raise BadRecordError(f"{item.source_id}: {item.problem}; fix the log writer",
                                 source_id=item.source_id, payload=str(item.ref.get("raw", "")).encode())
        text: str = item.ref["text"]
        tokens = {m["key"]: m["value"].strip('"') for m in TOKEN.finditer(text.split("\n", 1)[0])}
        keys = {key: tokens[token] for token, key in self.config.key_tokens.items() if token in tokens}
        keys.setdefault("device_id", Path(item.ref["file"]).stem)
        yield SourceRecord(source=self.source, source_id=item.source_id,
                           event_time=datetime.fromisoformat(item.ref["time"]), text=text, keys=keys,
                           objects=(RawObject("text", text.encode("utf-8"), "text/plain; charset=utf-8"),),
                           metadata={"file": item.ref["file"], "tokens": tokens}, event_time_origin="log-line")
