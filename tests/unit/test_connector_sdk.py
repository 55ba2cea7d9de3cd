from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.sdk import Connector, ConnectorConfig, Item, State, Window, registry
from connectors.sdk.registry import available_connectors, connector_class, load_connector
from rosetta.core.errors import ConfigError
from schemas.records import SourceRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_state_treats_ties_at_the_cursor_by_id() -> None:
    a, b, c = Item("a", cursor=5), Item("b", cursor=5), Item("c", cursor=7)
    state = State().advance([a, b])
    assert state == State(cursor=5, seen_at_cursor=frozenset({"a", "b"}))
    assert not state.is_new(a) and not state.is_new(Item("a", cursor=4))
    assert state.is_new(Item("z", cursor=5))  # same cursor, not yet committed
    assert state.is_new(c)
    assert state.advance([c]) == State(cursor=7, seen_at_cursor=frozenset({"c"}))
    assert state.advance([Item("late", cursor=3)]) == state  # never moves backwards
    assert State.from_json(state.to_json()) == state
    assert State.from_json(None) == State()


def test_items_without_cursor_are_always_new_and_cursor_type_changes_are_refused() -> None:
    assert State(cursor=5).is_new(Item("x"))
    assert State(cursor=5).is_new(Item("x", cursor=5.5))
    with pytest.raises(ConfigError, match="cursor type changed"):
        State(cursor="2026-01-01").is_new(Item("x", cursor=5))


def test_window_is_half_open_utc() -> None:
    window = Window(T0, T0 + timedelta(days=1))
    assert window.contains(T0) and not window.contains(T0 + timedelta(days=1))
    assert window.contains(datetime(2026, 1, 1, 23, tzinfo=timezone(timedelta(hours=-1)))) is False
    assert not Window().bounded and Window().contains(T0)
    with pytest.raises(ValueError, match="no timezone"):
        Window(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="before its start"):
        Window(T0, T0 - timedelta(seconds=1))


class _NeedsMissing(Connector[ConnectorConfig]):
    name = "needs_missing"
    config_class = ConnectorConfig
    requires = ("surely_not_installed_module_xyz",)
    extra = "xyz"

    def list_items(self, state: State, window: Window) -> Iterable[Item]:
        return []

    def fetch(self, item: Item) -> Iterable[SourceRecord]:
        return []


def test_registry_names_builtins_and_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "image_folder" in available_connectors()
    assert connector_class("image_folder").name == "image_folder"
    with pytest.raises(ConfigError, match="unknown connector 'nope'"):
        connector_class("nope")
    monkeypatch.setitem(registry.BUILTIN, "needs_missing", f"{__name__}:_NeedsMissing")
    with pytest.raises(ConfigError, match=r"pip install 'rosetta-data\[xyz\]'"):
        connector_class("needs_missing")
    monkeypatch.setitem(registry.BUILTIN, "broken", "no_such_module_abc:Thing")
    with pytest.raises(ConfigError, match="cannot be imported"):
        connector_class("broken")


def test_plugins_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    class _EP:
        name, value = "my_source", f"{__name__}:_Plugin"

    def fake_entry_points(group: str) -> list[Any]:
        return [_EP()] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    connector = load_connector("my_source", {"source": "plug"})
    assert isinstance(connector, _Plugin) and connector.source == "plug"


class _Plugin(_NeedsMissing):
    name = "my_source"
    requires = ()
