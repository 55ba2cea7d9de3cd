"""The connector SDK: what a source connector is, how it is found, and how it is tested.

A connector is three small things (see ``docs/connectors.md``):

- a typed config (:class:`ConnectorConfig` subclass, ``extra="forbid"``, secrets as ``SecretStr``);
- :meth:`Connector.list_items`: what is new since the committed :class:`State`, inside a :class:`Window`;
- :meth:`Connector.fetch`: one item's bytes parsed into :class:`~schemas.records.SourceRecord` s,
  raising :class:`~rosetta.core.errors.BadRecordError` for what must be quarantined.

The SDK imports nothing heavy; connectors import their client libraries inside methods.
"""

from __future__ import annotations

from connectors.sdk.base import Connector, ConnectorConfig, Item, State, Window
from connectors.sdk.registry import available_connectors, connector_class, load_connector

__all__ = [
    "Connector",
    "ConnectorConfig",
    "Item",
    "State",
    "Window",
    "available_connectors",
    "connector_class",
    "load_connector",
]
