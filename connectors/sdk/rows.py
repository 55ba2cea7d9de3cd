"""Row-shaped sources (tables, SQL results, API records): one set of rules for turning a row into an item.

``RowMapping`` says which fields are the id, the event time, the text, an image reference and the
entity keys; ``select_new`` applies the committed state, a backfill window and "newest version per
id".  The tabular, SQL and REST API connectors share them, so every row-shaped source treats ids,
times (UTC; naive times in the source's zone), missing fields and cursors the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from connectors.sdk.base import CursorValue, Item, State, Window
from rosetta.core.errors import BadRecordError, ConfigError
from rosetta.core.timeutil import coerce_utc, isoformat_z
from schemas.records import RawObject, SourceRecord

TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


def zone_from_name(name: str, *, setting: str = "timezone") -> tzinfo:
    """The IANA zone ``name``; a ConfigError naming ``setting`` if it is unknown."""
    try:
        return ZoneInfo(name)
    except Exception:
        raise ConfigError(f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'",
                          setting=setting) from None


def jsonable(value: Any) -> Any:
    """``value`` as something JSON round-trips unchanged (times as ISO 8601, NaN as None, bytes as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


class RowProblem(ValueError):
    """Why one row cannot become a record (the message names the field and the fix)."""


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (isinstance(value, str | bytes) and not value.strip())


def _as_text(value: Any, field_name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RowProblem(f"{field_name} is not UTF-8 ({exc.reason} at byte {exc.start}); save the data as "
                             "UTF-8") from None
    return str(value)


def _as_id(value: Any, field_name: str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _as_text(value, field_name).strip()


@dataclass(frozen=True)
class RowMapping:
    """Which fields of a row are its id, event time, text, image and entity keys.

    ``cursor`` is ``"time"`` (the event time as an ISO 8601 UTC string, e.g.
    ``2026-01-02T03:04:05.000000Z``, which sorts like the time) or ``"id"``
    (the id as an integer, for append-only tables with a sequence id).
    ``zone`` is the source's zone for naive times.  ``get`` reads a field
    from a row (REST records use dotted paths).
    """

    id_field: str
    time_field: str
    zone: tzinfo
    text_field: str | None = None
    require_text: bool = True
    image_field: str | None = None
    key_fields: Mapping[str, str] = field(default_factory=dict)
    metadata_fields: Sequence[str] = ()
    cursor: Literal["time", "id"] = "time"
    get: Callable[[Mapping[str, Any], str], Any] = lambda row, name: row.get(name)

    def to_item(self, row: Mapping[str, Any], *, fallback_id: str, ref: Mapping[str, Any]) -> Item:
        """The row as an :class:`Item` whose ``ref`` holds the parsed fields, or a problem item.

        A problem item keeps the raw row (``ref["raw"]``) so quarantine can
        store it; its id is the row's id if it has one, else ``fallback_id``.
        """
        raw_id = self.get(row, self.id_field)
        source_id = fallback_id
        cursor: CursorValue | None = None
        try:
            if not _present(raw_id):
                raise RowProblem(f"{self.id_field} is missing; every row needs an id")
            source_id = _as_id(raw_id, self.id_field)
            raw_time = self.get(row, self.time_field)
            if not _present(raw_time):
                raise RowProblem(f"{self.time_field} is missing; every row needs an event time")
            try:
                event_time = coerce_utc(_as_text(raw_time, self.time_field) if isinstance(raw_time, bytes)
                                        else raw_time, zone=self.zone, name=self.time_field)
            except (ValueError, OverflowError, OSError) as exc:
                raise RowProblem(f"{self.time_field} {jsonable(raw_time)!r} is not a time ({exc}); use ISO 8601, "
                                 "e.g. 2026-01-02T03:04:05+00:00") from None
            if self.cursor == "id":
                if not source_id.lstrip("-").isdigit():
                    raise RowProblem(f"{self.id_field} {source_id!r} is not an integer; the source's cursor "
                                     "is the id")
                cursor = int(source_id)
            else:
                cursor = isoformat_z(event_time)
            text = None
            if self.text_field is not None:
                raw_text = self.get(row, self.text_field)
                text = _as_text(raw_text, self.text_field).strip() if _present(raw_text) else None
                if text is None and self.require_text:
                    raise RowProblem(f"{self.text_field} is empty; write the text or set require_text=false")
            image = None
            if self.image_field is not None:
                raw_image = self.get(row, self.image_field)
                image = _as_text(raw_image, self.image_field).strip() if _present(raw_image) else None
            keys = {name: _as_id(value, column) for name, column in self.key_fields.items()
                    if _present(value := self.get(row, column))}
            metadata = {name: jsonable(_as_text(value, name) if isinstance(value, bytes) else value)
                        for name in self.metadata_fields if (value := self.get(row, name)) is not None}
        except RowProblem as exc:
            return Item(source_id=source_id, cursor=cursor, problem=str(exc),
                        ref={**ref, "raw": jsonable(dict(row))})
        return Item(source_id=source_id, cursor=cursor,
                    ref={**ref, "time": isoformat_z(event_time), "text": text, "image": image, "keys": keys,
                         "metadata": metadata})

    def record(self, source: str, item: Item, objects: Sequence[RawObject] = ()) -> SourceRecord:
        """The record of a good item from :meth:`to_item` (its text, if any, is kept as a ``text`` object)."""
        text: str | None = item.ref.get("text")
        all_objects = list(objects)
        if text:
            all_objects.append(RawObject("text", text.encode("utf-8"), TEXT_MEDIA_TYPE))
        return SourceRecord(source=source, source_id=item.source_id,
                            event_time=datetime.fromisoformat(item.ref["time"]), objects=tuple(all_objects),
                            text=text, keys=dict(item.ref.get("keys") or {}),
                            metadata=dict(item.ref.get("metadata") or {}))


def problem_error(item: Item, where: str) -> BadRecordError:
    """The BadRecordError for a problem item, carrying its raw row as JSON bytes."""
    raw = item.ref.get("raw")
    if isinstance(raw, str):
        payload: bytes | None = raw.encode("utf-8")
    else:
        payload = json.dumps(raw, sort_keys=True).encode("utf-8") if raw is not None else None
    return BadRecordError(f"{where}: {item.problem}", source_id=item.source_id, payload=payload)


def select_new(items: Iterable[Item], state: State, window: Window) -> list[Item]:
    """The items past ``state`` and inside ``window``, newest version per id, in (cursor, id) order.

    A source that holds one id twice (an updated row appended to a table, a
    record moved between pages) yields the newest; problem items without a
    cursor are listed on every unbounded run until they are fixed.
    """
    newest: dict[str, Item] = {}
    for item in items:
        old = newest.get(item.source_id)
        if old is None or _order(item) >= _order(old):
            newest[item.source_id] = item
    chosen = []
    for item in newest.values():
        if item.cursor is None:
            if not window.bounded:
                chosen.append(item)
            continue
        if not state.is_new(item):
            continue
        if window.bounded and "time" in item.ref and not window.contains(datetime.fromisoformat(item.ref["time"])):
            continue
        chosen.append(item)
    return sorted(chosen, key=lambda item: (_order(item), item.source_id))


def _order(item: Item) -> tuple[int, Any]:
    return (0, 0) if item.cursor is None else (1, item.cursor)
