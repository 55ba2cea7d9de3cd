"""The contract every connector passes: the same checks against each connector's real source."""

from __future__ import annotations

import importlib
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from connectors.sdk import Connector, Item, State, Window, load_connector
from rosetta.core.errors import BadRecordError, ConfigError
from schemas.records import SourceRecord
from tests.contract.harness import ConnectorHarness

HARNESSES: list[ConnectorHarness] = [
    importlib.import_module(f"tests.contract.{path.stem}").HARNESS
    for path in sorted(Path(__file__).parent.glob("harness_*.py"))
]

pytestmark = pytest.mark.integration


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> ConnectorHarness:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def options(harness: ConnectorHarness, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return harness.make_source(tmp_path, request)


def _build(harness: ConnectorHarness, options: dict[str, Any]) -> Connector[Any]:
    connector = load_connector(harness.name, options)
    connector.check()
    return connector


def _fetch_all(connector: Connector[Any], items: list[Item]) -> tuple[dict[str, list[SourceRecord]], dict[str, str]]:
    good: dict[str, list[SourceRecord]] = {}
    bad: dict[str, str] = {}
    for item in items:
        try:
            good[item.source_id] = list(connector.fetch(item))
        except BadRecordError as exc:
            bad[item.source_id] = exc.reason
    return good, bad


def test_config_is_strict_and_misconfiguration_is_a_config_error(harness: ConnectorHarness,
                                                                  options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="not_an_option"):
        load_connector(harness.name, {**options, "not_an_option": 1})
    for bad in harness.bad_options(options):
        with pytest.raises(ConfigError):
            connector = load_connector(harness.name, bad)
            connector.check()
            list(connector.list_items(State(), Window()))


def test_lists_and_fetches_records_with_utc_times_and_stable_ids(harness: ConnectorHarness,
                                                                   options: dict[str, Any]) -> None:
    with _build(harness, options) as connector:
        items = list(connector.list_items(State(), Window()))
        assert len(items) >= 3
        assert len({i.source_id for i in items}) == len(items)
        for item in items:
            assert Item.from_json(json.loads(json.dumps(item.to_json()))) == item  # travels through XCom/files
        good, bad = _fetch_all(connector, items)
        assert not bad and len(good) == len(items)
        for records in good.values():
            assert records
            for record in records:
                assert record.source == options["source"]
                assert record.event_time.utcoffset() is not None
                assert record.event_time.astimezone(UTC) == record.event_time
                assert record.objects or record.text
                assert all(o.data is not None and o.media_type for o in record.objects)
        again = list(connector.list_items(State(), Window()))
        assert [i.source_id for i in again] == [i.source_id for i in items]  # deterministic
        refetched, _ = _fetch_all(connector, again)
        assert {k: [(r.source_id, [o.data for o in r.objects], r.text) for r in v] for k, v in refetched.items()} == \
               {k: [(r.source_id, [o.data for o in r.objects], r.text) for r in v] for k, v in good.items()}


def test_incremental_second_run_lists_nothing_then_only_what_is_new(harness: ConnectorHarness,
                                                                      options: dict[str, Any]) -> None:
    with _build(harness, options) as connector:
        state = State().advance(connector.list_items(State(), Window()))
        restored = State.from_json(json.loads(json.dumps(state.to_json())))
        assert restored == state
        assert list(connector.list_items(restored, Window())) == []
        new_ids = harness.add_new(options)
        assert new_ids
        listed = list(connector.list_items(restored, Window()))
        assert {i.source_id for i in listed} == new_ids
        good, bad = _fetch_all(connector, listed)
        assert not bad and set(good) == new_ids
        assert list(connector.list_items(restored.advance(listed), Window())) == []


def test_bad_records_are_quarantinable_and_the_rest_goes_on(harness: ConnectorHarness,
                                                            options: dict[str, Any]) -> None:
    with _build(harness, options) as connector:
        state = State().advance(connector.list_items(State(), Window()))
        bad_ids = harness.add_bad(options)
        new_ids = harness.add_new(options)
        listed = list(connector.list_items(state, Window()))
        good, bad = _fetch_all(connector, listed)
        assert set(bad) == bad_ids, bad
        assert all(reason.strip() for reason in bad.values())
        assert new_ids <= set(good)
