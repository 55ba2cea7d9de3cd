"""Find connectors by short name: built-ins here, third-party ones through the
``rosetta.connectors`` entry-point group.  Nothing is imported until asked for."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from connectors.sdk.base import Connector
from rosetta.core.config import validate_config
from rosetta.core.errors import ConfigError

ENTRY_POINT_GROUP = "rosetta.connectors"

#: Built-in connectors: short name -> "module:Class".
BUILTIN: dict[str, str] = {
    "image_folder": "connectors.image_folder:ImageFolderConnector",
    "s3_prefix": "connectors.s3_prefix:S3PrefixConnector",
    "webdataset": "connectors.webdataset:WebDatasetConnector",
    "tabular": "connectors.tabular:TabularConnector",
    "sql": "connectors.sql:SqlConnector",
    "rest_api": "connectors.rest_api:RestApiConnector",
    "clinical_reports": "connectors.clinical_reports:ClinicalReportsConnector",
    "dicom_files": "connectors.dicom_files:DicomFilesConnector",
    "mqtt_events": "connectors.mqtt_events:MqttEventsConnector",
    "coco": "connectors.coco:CocoConnector",
    "video_subtitles": "connectors.video_subtitles:VideoSubtitlesConnector",
    "documents": "connectors.documents:DocumentsConnector",
    "machine_logs": "connectors.machine_logs:MachineLogsConnector",
    "dicomweb": "connectors.dicomweb:DicomWebConnector",
    "dicom_dimse": "connectors.dicom_dimse:DicomDimseConnector",
    # `rosetta connector new NAME` adds new connectors above this line
}


def _discovered() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN}  # a plug-in cannot shadow a built-in


def available_connectors() -> dict[str, str]:
    """Short name -> ``module:Class`` for every known connector (built-in and plug-in)."""
    return dict(sorted(_discovered().items()))


def connector_class(name: str) -> type[Connector[Any]]:
    """Import the connector called ``name``; a clear ConfigError if unknown or missing a dependency."""
    target = _discovered().get(name)
    if target is None:
        raise ConfigError(f"unknown connector {name!r}; known: {', '.join(available_connectors())}. A third-party "
                          f"connector registers itself in the {ENTRY_POINT_GROUP!r} entry-point group",
                          setting="connector")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"connector {name!r} cannot be imported ({exc}); install its dependencies, e.g. "
                          f"pip install 'rosetta-data[{name}]'", setting="connector") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{target} is not a Connector subclass", setting="connector")
    missing = cls.missing_modules()
    if missing:
        extra = cls.extra or name
        raise ConfigError(f"connector {name!r} needs {', '.join(missing)}: pip install 'rosetta-data[{extra}]'",
                          setting="connector")
    return cls


def load_connector(name: str, options: dict[str, Any], *, where: str | None = None) -> Connector[Any]:
    """Build connector ``name`` from plain options (validated against its config class)."""
    cls = connector_class(name)
    config = validate_config(cls.config_class, options, where=where or f"connector {name!r} config")
    return cls(config)
