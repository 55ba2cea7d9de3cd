"""The feature registry: which entities and feature-view versions exist, kept in the object store.

``rosetta features apply`` compares a repository's definitions (:mod:`schemas.features`) with the
registry and applies the difference:

- a new view is added with its first version;
- a view whose version changed (another encoder, dimension, source, features...) gets the new
  version beside the old ones; the new one becomes current, the old ones stay listed (their stored
  values are untouched, so training jobs pinned to them keep working);
- a changed description, ttl, owner or tags updates the current version's metadata in place;
- a view or entity no longer defined is **removed** from the registry, but only when the removal is
  confirmed (``--yes`` or an answer at the prompt): Feast keeps such objects until someone deletes
  them by hand; here the definitions file is the truth and the plan says what goes.  Removing a view
  does not delete its stored values (offline files, Qdrant collections).

The registry is one JSON document at ``registry/features.json`` in the feature store's object store
(local or S3), so every worker and training job sees the same one.  Each apply re-reads it right
before writing and refuses if another apply wrote in between (``generation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from rosetta.core.errors import ConfigError, RosettaError
from schemas.features import Entity, FeatureDefinitions, FeatureView

if TYPE_CHECKING:
    from feature_store.object_store import ObjectStore

REGISTRY_KEY = "registry/features.json"
FORMAT = 1
Action = Literal["add", "new_version", "update", "remove", "unchanged"]


class RemovalNotConfirmed(ConfigError):
    """The plan removes definitions and nobody confirmed it."""


class RegistryConflict(RosettaError):
    """Another apply changed the registry while this one was planning."""


@dataclass(frozen=True)
class Change:
    """One line of a plan."""

    kind: Literal["entity", "feature_view"]
    name: str
    action: Action
    old_version: str | None = None
    new_version: str | None = None

    def describe(self) -> str:
        what = f"{self.kind.replace('_', ' ')} {self.name}"
        if self.action == "add":
            return f"+ add {what}" + (f" ({self.new_version})" if self.new_version else "")
        if self.action == "new_version":
            return f"~ new version of {what}: {self.old_version} -> {self.new_version} (the old version stays)"
        if self.action == "update":
            return f"~ update {what} (metadata only" + (f", {self.new_version})" if self.new_version else ")")
        if self.action == "remove":
            return f"- REMOVE {what}" + (f" (versions: {self.old_version})" if self.old_version else "")
        return f"  unchanged {what}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)

    @property
    def removals(self) -> list[Change]:
        return [c for c in self.changes if c.action == "remove"]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def lines(self) -> list[str]:
        return [c.describe() for c in self.changes]


def resolve_encoder(view: FeatureView) -> FeatureView:
    """An embedding view with its encoder's weights revision filled in from the local files (so a new set of
    weights under the same name is a new version).  ConfigError naming the view when they cannot be found."""
    encoder = view.encoder
    if encoder is None or encoder.revision:
        return view
    from pathlib import Path

    from transforms.encoders.base import weights_revision
    from transforms.encoders.config import (
        ImageEncoderConfig,
        TextEncoderConfig,
        resolve_image_model_path,
        resolve_text_model_path,
    )

    path = Path(encoder.path) if encoder.path else None
    try:
        if encoder.kind == "hf-mean-pool":
            located = resolve_text_model_path(TextEncoderConfig(path=path))
        else:
            located = resolve_image_model_path(ImageEncoderConfig(kind=encoder.kind, path=path))
    except ConfigError as exc:
        raise ConfigError(f"feature view {view.name!r}: its encoder's weights cannot be found ({exc}); set "
                          "encoder.path to the local model, or encoder.revision to pin it without the files",
                          setting="encoder.path") from None
    resolved = encoder.model_copy(update={"revision": weights_revision(located)})
    return view.model_copy(update={"encoder": resolved})


class Registry:
    """Entities and feature views with their versions, in one object of ``store``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._pinned: dict[tuple[str, str], FeatureView] = {}  # a version's definition never changes

    # -- reading -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if not self.store.exists(REGISTRY_KEY):
            return {"format": FORMAT, "generation": 0, "updated_at": None, "entities": {}, "feature_views": {}}
        state = json.loads(self.store.read_bytes(REGISTRY_KEY))
        if state.get("format") != FORMAT:
            raise ConfigError(f"{self.store.uri_for(REGISTRY_KEY)} has registry format {state.get('format')!r}; "
                              f"this Rosetta reads format {FORMAT}", setting="registry")
        return dict(state)

    def entities(self) -> list[Entity]:
        return [Entity.model_validate(e) for _, e in sorted(self.state()["entities"].items())]

    def views(self) -> list[FeatureView]:
        """The current version of every view."""
        state = self.state()
        return [self._view(state, name) for name in sorted(state["feature_views"])]

    def listing(self) -> list[tuple[FeatureView, int]]:
        """The current version of every view with how many versions it has (one read of the registry)."""
        state = self.state()
        return [(self._view(state, name), len(state["feature_views"][name]["versions"]))
                for name in sorted(state["feature_views"])]

    def view(self, name: str, version: str | None = None) -> FeatureView:
        """A view's current version, or the given one.  ConfigError listing what exists when unknown.  A given
        version is read once per registry object (versions are immutable), which keeps online search off the
        object store."""
        if version is not None and (name, version) in self._pinned:
            return self._pinned[(name, version)]
        view = self._view(self.state(), name, version)
        if version is not None:
            self._pinned[(name, version)] = view
        return view

    def resolve(self, names: list[str] | None = None,
                versions: dict[str, str] | None = None) -> tuple[list[FeatureView], list[Entity]]:
        """The named views (default: every view), each at its current version or the one pinned in ``versions``,
        and every entity, from one read of the registry."""
        state = self.state()
        chosen = sorted(state["feature_views"]) if names is None else names
        return ([self._view(state, name, (versions or {}).get(name)) for name in chosen],
                [Entity.model_validate(e) for _, e in sorted(state["entities"].items())])

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a view, oldest first: version, applied_at, current."""
        state = self.state()
        entry = self._entry(state, name)
        found = [{"version": v, "applied_at": info["applied_at"], "current": v == entry["current"]}
                 for v, info in entry["versions"].items()]
        return sorted(found, key=lambda v: (v["applied_at"], v["version"]))

    def _entry(self, state: dict[str, Any], name: str) -> dict[str, Any]:
        entry = state["feature_views"].get(name)
        if entry is None:
            known = ", ".join(sorted(state["feature_views"])) or "none"
            raise ConfigError(f"no feature view {name!r} in the registry (it has: {known}); run "
                              "'rosetta features apply' after defining it", setting="feature_view")
        return dict(entry)

    def _view(self, state: dict[str, Any], name: str, version: str | None = None) -> FeatureView:
        entry = self._entry(state, name)
        chosen = version or entry["current"]
        if chosen not in entry["versions"]:
            raise ConfigError(f"feature view {name!r} has no version {chosen!r} (it has: "
                              f"{', '.join(entry['versions'])})", setting="feature_view")
        return FeatureView.model_validate(entry["versions"][chosen]["definition"])

    # -- applying ------------------------------------------------------------------------------------
    def plan(self, definitions: FeatureDefinitions, *, resolve: bool = True) -> Plan:
        return self._plan(self.state(), self._resolved(definitions, resolve))

    def apply(self, definitions: FeatureDefinitions, *, confirm_removals: bool = False,
              resolve: bool = True) -> Plan:
        """Make the registry hold ``definitions``; returns what was done.  RemovalNotConfirmed (nothing written)
        when definitions would be removed without ``confirm_removals``."""
        definitions = self._resolved(definitions, resolve)
        state = self.state()
        plan = self._plan(state, definitions)
        if plan.removals and not confirm_removals:
            raise RemovalNotConfirmed(
                "applying would remove " + "; ".join(c.describe()[2:] for c in plan.removals)
                + " from the registry; confirm with --yes (stored values are kept), or put the definitions back",
                setting="features_file")
        if not plan.has_changes:
            return plan
        now = datetime.now(UTC).isoformat()
        new_state = {**state, "generation": state["generation"] + 1, "updated_at": now,
                     "entities": {e.name: e.model_dump(mode="json") for e in definitions.entities},
                     "feature_views": {}}
        for view in definitions.feature_views:
            entry = state["feature_views"].get(view.name, {"current": None, "versions": {}})
            versions = dict(entry["versions"])
            info = versions.get(view.version, {"applied_at": now})
            versions[view.version] = {**info, "definition": view.model_dump(mode="json")}
            new_state["feature_views"][view.name] = {"current": view.version, "versions": versions}
        if self.state()["generation"] != state["generation"]:
            raise RegistryConflict("another 'rosetta features apply' changed the registry meanwhile; run it again")
        self.store.write_bytes(REGISTRY_KEY, json.dumps(new_state, indent=1, sort_keys=True).encode(),
                               media_type="application/json")
        return plan

    @staticmethod
    def _resolved(definitions: FeatureDefinitions, resolve: bool) -> FeatureDefinitions:
        if not resolve:
            return definitions
        views = tuple(resolve_encoder(v) for v in definitions.feature_views)
        return definitions.model_copy(update={"feature_views": views})

    @staticmethod
    def _plan(state: dict[str, Any], definitions: FeatureDefinitions) -> Plan:
        changes: list[Change] = []
        wanted_entities = {e.name: e for e in definitions.entities}
        for name, entity in wanted_entities.items():
            old = state["entities"].get(name)
            action: Action = "add" if old is None else (
                "unchanged" if old == entity.model_dump(mode="json") else "update")
            changes.append(Change("entity", name, action))
        changes += [Change("entity", name, "remove") for name in sorted(state["entities"])
                    if name not in wanted_entities]
        wanted_views = {v.name: v for v in definitions.feature_views}
        for name, view in wanted_views.items():
            entry = state["feature_views"].get(name)
            if entry is None:
                changes.append(Change("feature_view", name, "add", new_version=view.version))
            elif entry["current"] != view.version:  # (back to an earlier version: that one becomes current again)
                changes.append(Change("feature_view", name, "new_version", old_version=entry["current"],
                                      new_version=view.version))
            else:
                same = entry["versions"][view.version]["definition"] == view.model_dump(mode="json")
                changes.append(Change("feature_view", name, "unchanged" if same else "update",
                                      new_version=view.version))
        changes += [Change("feature_view", name, "remove", old_version=", ".join(state["feature_views"][name][
            "versions"])) for name in sorted(state["feature_views"]) if name not in wanted_views]
        return Plan(changes)
