"""Connector base classes: config, items, incremental state, the connector interface."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import Field

from rosetta.core.config import StrictModel
from rosetta.core.errors import ConfigError
from rosetta.core.timeutil import ensure_utc, from_timestamp
from schemas.records import SourceRecord

CursorValue = str | int | float


class ConnectorConfig(StrictModel):
    """Fields every connector config has; subclasses add their own.

    ``source`` is the name recorded in the manifest and in sample ids; it must
    stay the same for the life of the source.
    """

    source: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)


@dataclass(frozen=True, slots=True)
class Window:
    """A bounded backfill ``[start, end)`` in UTC (Airflow's data interval); ``None`` is unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None:
            object.__setattr__(self, "start", ensure_utc(self.start, name="window start"))
        if self.end is not None:
            object.__setattr__(self, "end", ensure_utc(self.end, name="window end"))
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"window end {self.end} is before its start {self.start}")

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    def contains(self, moment: datetime) -> bool:
        """True if ``moment`` (tz-aware) is in ``[start, end)``."""
        moment = ensure_utc(moment)
        return (self.start is None or moment >= self.start) and (self.end is None or moment < self.end)

    def contains_mtime_ns(self, mtime_ns: int) -> bool:
        """True if a file modification time (ns since the epoch, as ``st_mtime_ns``) is in the window.

        File-based connectors select a backfill by modification time; always True when unbounded.
        """
        return not self.bounded or self.contains(from_timestamp(mtime_ns / 1e9))


@dataclass(frozen=True, slots=True)
class Item:
    """Something a source holds, found by listing: enough to fetch it later, JSON-able.

    ``cursor`` orders items for incremental runs (a timestamp string, a
    sequence number, an mtime); ``ref`` is whatever :meth:`Connector.fetch`
    needs (a path, a key and etag, a row).  ``problem`` marks an item that can
    only be quarantined (an unknown file type, an orphan sidecar).
    """

    source_id: str
    cursor: CursorValue | None = None
    ref: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source_id": self.source_id, "ref": self.ref}
        if self.cursor is not None:
            out["cursor"] = self.cursor
        if self.problem is not None:
            out["problem"] = self.problem
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(source_id=data["source_id"], cursor=data.get("cursor"), ref=data.get("ref") or {},
                   problem=data.get("problem"))


@dataclass(frozen=True, slots=True)
class State:
    """A connector's incremental state: the high-water cursor of what is committed.

    Items with a cursor equal to ``cursor`` may still be new (several files
    with the same mtime, rows with the same timestamp), so the ids already
    committed at exactly that value are kept in ``seen_at_cursor``.  The
    pipeline stores the state inside the same manifest part as the data it
    covers, so both commit in one atomic write.
    """

    cursor: CursorValue | None = None
    seen_at_cursor: frozenset[str] = frozenset()

    def is_new(self, item: Item) -> bool:
        """True if ``item`` is past the committed cursor (items without a cursor are always listed)."""
        if self.cursor is None or item.cursor is None:
            return True
        if type(item.cursor) is not type(self.cursor) and not (
                isinstance(item.cursor, (int, float)) and isinstance(self.cursor, (int, float))):
            raise ConfigError(f"cursor type changed from {type(self.cursor).__name__} to "
                              f"{type(item.cursor).__name__}; reset the source's state", setting="state")
        if item.cursor > self.cursor:  # type: ignore[operator]
            return True
        return item.cursor == self.cursor and item.source_id not in self.seen_at_cursor

    def advance(self, items: Iterable[Item]) -> State:
        """The state after ``items`` are committed: the highest cursor and the ids at it."""
        cursor, seen = self.cursor, set(self.seen_at_cursor)
        for item in items:
            if item.cursor is None:
                continue
            if cursor is None or item.cursor > cursor:  # type: ignore[operator]
                cursor, seen = item.cursor, {item.source_id}
            elif item.cursor == cursor:
                seen.add(item.source_id)
        return State(cursor=cursor, seen_at_cursor=frozenset(seen))

    def to_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "seen_at_cursor": sorted(self.seen_at_cursor)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> State:
        if not data:
            return cls()
        return cls(cursor=data.get("cursor"), seen_at_cursor=frozenset(data.get("seen_at_cursor") or ()))


class Connector(ABC, Generic[ConfigT]):
    """A source.  Subclasses set ``name`` and ``config_class`` and implement two methods.

    ``requires`` lists importable modules the connector needs and ``extra``
    the pip extra that installs them, so a missing dependency says what to
    install (:meth:`is_available`).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ConnectorConfig]]
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @property
    def source(self) -> str:
        return self.config.source

    @classmethod
    def missing_modules(cls) -> list[str]:
        return [module for module in cls.requires if importlib.util.find_spec(module) is None]

    @classmethod
    def is_available(cls) -> bool:
        return not cls.missing_modules()

    def check(self) -> None:
        """Raise ConfigError if the source is unreachable or misconfigured (a cheap probe)."""

    @abstractmethod
    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        """Items that are new after ``state`` (see :meth:`State.is_new`) and inside ``window``."""

    @abstractmethod
    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        """The records of one item; raise BadRecordError (with the bytes to keep) if unusable."""

    def close(self) -> None:
        """Release clients and connections."""

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # helpers for implementations
    def new_items(self, items: Iterable[Item], state: State) -> Iterator[Item]:
        """Filter ``items`` to those :meth:`State.is_new` accepts."""
        return (item for item in items if item.problem is not None or state.is_new(item))
