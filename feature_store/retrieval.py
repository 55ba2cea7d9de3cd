"""Point-in-time correct historical retrieval: the feature values a training row could have seen.

``point_in_time(entities, values, ...)`` gives each entity row (join keys + a timestamp ``ts``) the
value of one feature view that was *known* at ``ts``:

- **event-time semantics** (``bitemporal=False``, Feast's default): among the rows of the same keys
  with ``event_time <= ts``, the latest event time;
- **bitemporal** (the default): a row is visible only if its ``event_time <= ts`` *and* its
  ``ingest_time <= ts`` (a value computed later about the past was not known then); among the
  visible rows, the latest event time;
- ties in event time: the latest ingest time (a correction wins), then the row stored last;
- ``ttl``: a value older than ``ts - ttl`` counts as missing (null features);
- an entity row with a null key or timestamp gets nulls.

The engine: every value row becomes visible at ``max(event_time, ingest_time)`` (bitemporal) or at
its ``event_time``; the value rows are sorted by (keys, that moment), and a running maximum of each
row's rank by (keys, event_time, ingest_time, position) gives, at every position, the best row visible
so far.  One binary search per entity row then finds its answer: O((n + m) log n), numpy, no Python
loop.  :func:`get_historical_features` does this per view and joins the columns onto the entity rows
in their own order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from feature_store.offline import OfflineStore
    from schemas.features import Entity, FeatureView

@dataclass(frozen=True)
class FeatureRef:
    """``view:feature`` (or ``view`` for every feature of it)."""

    view: str
    feature: str | None = None

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        view, _, feature = text.partition(":")
        return cls(view, feature or None)


def point_in_time(entities: pa.Table, values: pa.Table, keys: list[str], *, timestamp: str = "ts",
                  event_time: str = "event_time", ingest_time: str = "ingest_time", bitemporal: bool = True,
                  ttl: timedelta | None = None) -> np.ndarray:
    """For each entity row, the position of its value row in ``values`` (-1: none); see the module docstring."""
    import numpy as np

    from transforms.alignment.align import NULL_TIME as NULL
    from transforms.alignment.align import _group_indices, _micros

    n_entities = entities.num_rows
    answer = np.full(n_entities, -1, dtype=np.int64)
    if not n_entities or not values.num_rows:
        return answer
    entity_groups, value_groups = _group_indices(entities, values, tuple(keys))
    ts = _micros(entities, timestamp)
    event = _micros(values, event_time)
    ingest = _micros(values, ingest_time)
    usable = (value_groups >= 0) & (event != NULL) & (ingest != NULL)
    rows = np.flatnonzero(usable)
    if not len(rows):
        return answer
    group, event, ingest = value_groups[rows], event[rows], ingest[rows]
    visible_at = np.maximum(event, ingest) if bitemporal else event
    # rank of every value row by (group, event, ingest, position): the better row has the higher rank
    rank = np.empty(len(rows), dtype=np.int64)
    rank[np.lexsort((rows, ingest, event, group))] = np.arange(len(rows), dtype=np.int64)
    order = np.lexsort((rank, visible_at, group))  # by (group, visible_at); equal moments: best last
    best = np.maximum.accumulate(rank[order])  # groups ascend, and so do their ranks: no reset needed
    by_rank = np.empty(len(rows), dtype=np.int64)
    by_rank[rank] = np.arange(len(rows), dtype=np.int64)  # rank -> index into rows
    sorted_group, sorted_visible = group[order], visible_at[order]
    valid = (entity_groups >= 0) & (ts != NULL)
    queries = np.flatnonzero(valid)
    if not len(queries):
        return answer
    q_group, q_ts = entity_groups[queries], ts[queries]
    # last position with (group, visible_at) <= (q_group, q_ts): a search over the pairs, as one int64 key each
    low, high = int(min(sorted_visible.min(), q_ts.min())), int(max(sorted_visible.max(), q_ts.max()))
    width = high - low + 2
    if (int(max(sorted_group.max(), q_group.max())) + 1) * width >= 2**62:
        raise ConfigError("too many entities over too long a time span for one retrieval; retrieve in time ranges",
                          setting="entity_df")
    position = np.searchsorted(sorted_group * width + (sorted_visible - low), q_group * width + (q_ts - low),
                               side="right") - 1
    found = position >= 0
    found[found] = sorted_group[position[found]] == q_group[found]
    chosen = by_rank[best[np.maximum(position, 0)]]
    if ttl is not None:
        found &= q_ts - event[chosen] <= ttl // timedelta(microseconds=1)
    answer[queries[found]] = rows[chosen[found]]
    return answer


def get_historical_features(offline: OfflineStore, views: list[FeatureView], entities_by_name: dict[str, Entity],
                            entity_rows: pa.Table | None = None, *, features: list[str] | None = None,
                            start: datetime | None = None, end: datetime | None = None,
                            timestamp: str = "event_timestamp", bitemporal: bool = True,
                            full_feature_names: bool = False) -> pa.Table:
    """The entity rows (their own columns, in their order) with each requested feature as known at the row's
    ``timestamp``.

    ``entity_rows``: join keys + ``timestamp``.  Without it, ``start``/``end`` give a time range, and the
    entity rows are the first view's stored rows with an event time in it, each at the moment it was known
    (its event time; bitemporal: the later of its event and ingest times, which must be before ``end``):
    how a training set over a period is built without a dataframe.  ``features``: ``view:feature`` names (``view``
    alone: all of its features); default: all of every view.  Each view's ``ttl`` applies.
    """
    import pyarrow as pa

    from feature_store.offline import EVENT_TIME, INGEST_TIME, join_keys

    if not views:
        raise ConfigError("no feature views requested", setting="features")
    keys_of = {e.name: e.join_keys for e in entities_by_name.values()}
    wanted = _wanted(views, features)
    if entity_rows is None:
        if start is None or end is None:
            raise ConfigError("give entity rows, or a time range (start and end)", setting="entity_df")
        first = views[0]
        keys = join_keys(first, keys_of)
        stored = offline.read(first, keys, start=start, end=end, columns=[*keys, EVENT_TIME, INGEST_TIME])
        moment = stored.column(EVENT_TIME)
        if bitemporal:  # each row when it was known: the later of its event and its ingest time
            import pyarrow.compute as pc

            ts = pa.timestamp("us", "UTC")
            moment = pc.max_element_wise(moment.cast(pa.int64()), stored.column(INGEST_TIME).cast(pa.int64())).cast(ts)
            keep = pc.less(moment, pa.scalar(end, pa.timestamp("us", "UTC")))
            stored, moment = stored.filter(keep), moment.filter(keep)
        entity_rows = stored.select(keys).append_column(timestamp, moment)
    if timestamp not in entity_rows.column_names:
        raise ConfigError(f"the entity rows have no {timestamp!r} column (they have "
                          f"{', '.join(entity_rows.column_names)})", setting="entity_df")
    out = entity_rows
    taken = set(out.column_names)  # a set: 1,000 appended columns must not rescan the names each time
    for view in views:
        keys = join_keys(view, keys_of)
        missing = [k for k in keys if k not in entity_rows.column_names]
        if missing:
            raise ConfigError(f"feature view {view.name!r} joins on {', '.join(keys)}; the entity rows lack "
                              f"{', '.join(missing)}", setting="entity_df")
        names = wanted[view.name]
        latest = end or _latest(entity_rows, timestamp)
        stored = offline.read(view, keys, end=latest + timedelta(microseconds=1) if latest else None,
                              columns=[*keys, EVENT_TIME, INGEST_TIME, *names])
        position = point_in_time(entity_rows.select([*keys, timestamp]), stored, keys, timestamp=timestamp,
                                 bitemporal=bitemporal, ttl=view.ttl)
        take = pa.array(position, pa.int64(), mask=position < 0)
        columns: list[Any] = []
        names_out: list[str] = []
        for name in names:
            column_name = f"{view.name}__{name}" if full_feature_names else name
            if column_name in taken:
                raise ConfigError(f"feature {name!r} of view {view.name!r} clashes with column {column_name!r}; "
                                  "use full_feature_names=True", setting="features")
            taken.add(column_name)
            columns.append(stored.column(name).take(take))
            names_out.append(column_name)
        out = pa.Table.from_arrays([*out.columns, *columns], names=[*out.column_names, *names_out])
        del stored
    return out


def _wanted(views: list[FeatureView], features: list[str] | None) -> dict[str, list[str]]:
    from feature_store.offline import EMBEDDING

    def all_of(view: FeatureView) -> list[str]:
        return ([EMBEDDING] if view.kind == "embedding" else []) + [f.name for f in view.features]

    by_name = {v.name: v for v in views}
    if not features:
        return {v.name: all_of(v) for v in views}
    wanted: dict[str, list[str]] = {v.name: [] for v in views}
    for text in features:
        ref = FeatureRef.parse(text)
        if ref.view not in by_name:
            raise ConfigError(f"feature {text!r} names view {ref.view!r}, which is not among the views given "
                              f"({', '.join(by_name)})", setting="features")
        names = all_of(by_name[ref.view])
        if ref.feature is not None and ref.feature not in names:
            raise ConfigError(f"feature view {ref.view!r} has no feature {ref.feature!r} (it has "
                              f"{', '.join(names)})", setting="features")
        wanted[ref.view] += [ref.feature] if ref.feature else names
    return wanted


def _latest(table: pa.Table, column: str) -> datetime | None:
    import pyarrow.compute as pc

    value = pc.max(table.column(column)).as_py()
    return value if isinstance(value, datetime) else None
