"""Sources from configuration: one ingestion DAG per entry of ``sources.yaml``.

    sources:
      demo_photos:
        connector: image_folder
        schedule: "@hourly"          # any Airflow schedule; null = manual only
        description: Sample photos with captions
        options:                     # the connector's own config (validated when a task runs)
          root: ${ROSETTA_HOME:-~/.rosetta}/inbox

``${VAR}`` and ``${VAR:-default}`` in strings are replaced from the environment
of the process that reads the file.  Secrets do not belong here: use the
connector's secret settings (environment, Airflow connections).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rosetta.core.config import StrictModel, validate_config
from rosetta.core.errors import ConfigError
from rosetta.pipelines.settings import GatePolicies
from rosetta.pipelines.training import ProjectionSpec

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class SourceSpec(StrictModel):
    """One configured source: which connector, its options, and how its DAG is scheduled."""

    connector: str
    options: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    schedule: str | None = None
    start_date: datetime = datetime(2026, 1, 1)
    catchup: bool = False
    tags: list[str] = Field(default_factory=list)
    owner: str = "rosetta"
    retries: int = Field(default=2, ge=0)
    batch_size: int = Field(default=64, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    max_active_runs: int = Field(default=1, ge=1)
    gates: GatePolicies = Field(default_factory=GatePolicies)


class AlignSide(StrictModel):
    """One side of an alignment: a configured source, optionally only its records with an object of ``role``.

    ``keys`` maps an alignment key (a name in ``by``) to the record's entity key when they differ.
    """

    source: str
    role: str | None = None
    keys: dict[str, str] = Field(default_factory=dict)


class GateSpec(StrictModel):
    """The aligned-pairs quality gate: ``block`` stops the run on failure, ``warn`` records and goes on."""

    policy: Literal["block", "warn"] = "block"
    min_share_within_tolerance: float = Field(default=0.95, ge=0, le=1)
    max_abs_offset_s: float | None = Field(default=None, gt=0)


class AlignmentSpec(StrictModel):
    """One alignment DAG (``rosetta_align_<name>``): images of ``left`` paired with text of ``right``.

    It runs when either source commits new records (Airflow Assets), aligns incrementally and
    publishes ``rosetta://aligned/<name>`` once the gate passed.  ``right_end_key``: the right
    records' metadata field holding the end time (``interval`` strategy, e.g. a subtitle cue's end).
    """

    left: AlignSide
    right: AlignSide
    by: list[str] = Field(default_factory=list)
    strategy: Literal["backward", "forward", "nearest", "interval", "window"] = "backward"
    tolerance_s: float | None = Field(default=None, ge=0)
    allow_exact: bool = True
    cardinality: Literal["many_to_one", "one_to_many", "one_to_one"] = "many_to_one"
    window_s: tuple[float, float] = (0.0, 0.0)
    right_end_key: str | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    owner: str = "rosetta"


class SourcesFile(StrictModel):
    sources: dict[str, SourceSpec] = Field(default_factory=dict)
    alignments: dict[str, AlignmentSpec] = Field(default_factory=dict)
    models: dict[str, ProjectionSpec] = Field(default_factory=dict)


def expand_env(value: Any) -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string of ``value`` (recursively)."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found:
                return found
            if default is not None:
                return os.path.expanduser(default)
            raise ConfigError(f"sources file refers to ${{{name}}}, which is not set; set it or write "
                              f"${{{name}:-default}}", setting=name)
        return _VAR.sub(replace, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def sources_file_path(default: Path | None = None) -> Path:
    """``ROSETTA_SOURCES_FILE``, else ``default`` (the project's ``sources.yaml``)."""
    configured = os.environ.get("ROSETTA_SOURCES_FILE")
    if configured:
        return Path(configured).expanduser()
    if default is None:
        raise ConfigError("no sources file: set ROSETTA_SOURCES_FILE", setting="ROSETTA_SOURCES_FILE")
    return default


def load_sources(path: Path) -> dict[str, SourceSpec]:
    """Parse and validate a sources file; a missing file means no sources."""
    return dict(load_sources_file(path).sources)


def load_alignments(path: Path) -> dict[str, AlignmentSpec]:
    """The ``alignments`` of a sources file (each side must name a configured source)."""
    return dict(load_sources_file(path).alignments)


def load_sources_file(path: Path) -> SourcesFile:
    """Parse and validate a sources file: its sources and alignments."""
    import yaml

    if not path.is_file():
        return SourcesFile()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", setting="ROSETTA_SOURCES_FILE") from None
    parsed = validate_config(SourcesFile, raw if isinstance(raw, dict) else {"sources": raw}, where=str(path))
    for name in [*parsed.sources, *parsed.alignments, *parsed.models]:
        if not re.match(NAME_PATTERN, name):
            raise ConfigError(f"name {name!r} in {path} may only use letters, digits, '.', '_' and '-'",
                              setting="ROSETTA_SOURCES_FILE")
    for name, alignment in parsed.alignments.items():
        for side in (alignment.left, alignment.right):
            if side.source not in parsed.sources:
                raise ConfigError(f"alignment {name!r} in {path} names source {side.source!r}, which is not in its "
                                  f"sources ({', '.join(sorted(parsed.sources)) or 'none'})",
                                  setting="ROSETTA_SOURCES_FILE")
        if alignment.strategy == "interval" and not alignment.right_end_key:
            raise ConfigError(f"alignment {name!r}: strategy 'interval' needs right_end_key", setting="right_end_key")
    for name, model in parsed.models.items():
        unknown = [s for s in model.after if s not in parsed.sources]
        if unknown:
            raise ConfigError(f"model {name!r} in {path} runs after source(s) {', '.join(map(repr, unknown))}, which "
                              f"are not in its sources ({', '.join(sorted(parsed.sources)) or 'none'})",
                              setting="ROSETTA_SOURCES_FILE")
    return parsed


def resolved_options(name: str, spec: SourceSpec) -> dict[str, Any]:
    """The connector options with env references expanded and ``source`` defaulting to the entry's name."""
    options = expand_env(dict(spec.options))
    options.setdefault("source", name)
    return options
