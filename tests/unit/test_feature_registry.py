"""Feature definitions, their versions, and the registry's apply / list / describe (also via the CLI)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from feature_store.object_store import object_store_config_from_url, open_object_store
from feature_store.registry import REGISTRY_KEY, Registry, RemovalNotConfirmed, resolve_encoder
from rosetta.cli import main
from rosetta.core.errors import ConfigError
from schemas.features import EncoderRef, FeatureDefinitions, FeatureView, load_definitions

REPO = Path(__file__).resolve().parents[2]
PINNED = {"kind": "hf-mean-pool", "name": "minilm", "revision": "abc123"}  # revision given: no weights needed


def _definitions(*views: dict[str, Any]) -> FeatureDefinitions:
    return FeatureDefinitions.model_validate({
        "entities": [{"name": "sample", "join_keys": ["sample_id"]}, {"name": "study", "join_keys": ["study_uid"]}],
        "feature_views": list(views)})


def _text_view(**changes: Any) -> dict[str, Any]:
    return {"name": "text_emb", "entities": ["sample"], "kind": "embedding", "source": "demo", "modality": "text",
            "encoder": PINNED, "dimension": 384, **changes}


def _registry(tmp_path: Path) -> Registry:
    return Registry(open_object_store(object_store_config_from_url(str(tmp_path / "store"))))


def test_the_version_follows_what_determines_the_values() -> None:
    base = FeatureView.model_validate(_text_view())
    assert base.version.startswith("v") and len(base.version) == 13
    assert base.versioned_name == f"text_emb@{base.version}"
    other_encoder = FeatureView.model_validate(_text_view(encoder={**PINNED, "revision": "def456"}))
    other_dimension = FeatureView.model_validate(_text_view(dimension=768))
    other_source = FeatureView.model_validate(_text_view(source="reports"))
    assert len({base.version, other_encoder.version, other_dimension.version, other_source.version}) == 4
    metadata_only = FeatureView.model_validate(_text_view(description="new words", ttl="P7D", owner="ml",
                                                          tags={"team": "vision"}))
    assert metadata_only.version == base.version


def test_definitions_are_checked_with_messages_that_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs encoder, dimension"):
        FeatureView.model_validate({"name": "v", "entities": ["sample"], "kind": "embedding", "source": "s",
                                    "modality": "text"})
    with pytest.raises(ValueError, match="no encoder or dimension"):
        FeatureView.model_validate({"name": "v", "entities": ["sample"], "kind": "metadata", "source": "s",
                                    "dimension": 3})
    with pytest.raises(ValueError, match="lower case"):
        FeatureView.model_validate(_text_view(name="Text-Emb"))
    with pytest.raises(ValueError, match="entity 'device', which is not defined"):
        _definitions(_text_view(entities=["device"]))
    with pytest.raises(ValueError, match="'text_emb' defined twice"):
        _definitions(_text_view(), _text_view())
    with pytest.raises(ValueError, match="ttl must be positive"):
        FeatureView.model_validate(_text_view(ttl=timedelta(0)))


def test_apply_adds_versions_beside_the_old_ones_and_never_overwrites(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    first = registry.apply(_definitions(_text_view()), resolve=False)
    assert [c.action for c in first.changes] == ["add", "add", "add"]
    v1 = registry.view("text_emb").version
    assert not registry.apply(_definitions(_text_view()), resolve=False).has_changes  # idempotent

    plan = registry.apply(_definitions(_text_view(encoder={**PINNED, "revision": "new-weights"})), resolve=False)
    [change] = [c for c in plan.changes if c.kind == "feature_view"]
    assert (change.action, change.old_version) == ("new_version", v1)
    v2 = registry.view("text_emb").version
    assert v2 != v1 and [v["version"] for v in registry.versions("text_emb")] == [v1, v2]
    assert registry.view("text_emb", v1).encoder == EncoderRef(**PINNED)  # the old version is still there

    plan = registry.apply(_definitions(_text_view(encoder={**PINNED, "revision": "new-weights"}),), resolve=False)
    assert not plan.has_changes
    registry.apply(_definitions(_text_view(encoder={**PINNED, "revision": "new-weights"}, description="d")),
                   resolve=False)
    assert registry.view("text_emb").description == "d" and registry.view("text_emb").version == v2


def test_removal_needs_a_confirmation_and_nothing_is_written_without_it(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.apply(_definitions(_text_view(), {"name": "meta", "entities": ["study"], "kind": "metadata",
                                               "source": "reports"}), resolve=False)
    before = registry.store.read_bytes(REGISTRY_KEY)
    with pytest.raises(RemovalNotConfirmed, match="feature view meta"):
        registry.apply(_definitions(_text_view()), resolve=False)
    assert registry.store.read_bytes(REGISTRY_KEY) == before
    plan = registry.apply(_definitions(_text_view()), confirm_removals=True, resolve=False)
    assert [c.name for c in plan.removals] == ["meta"]
    assert [v.name for v in registry.views()] == ["text_emb"]
    with pytest.raises(ConfigError, match=r"no feature view 'meta'.*it has: text_emb"):
        registry.view("meta")


def test_the_encoder_revision_comes_from_the_local_weights() -> None:
    view = FeatureView.model_validate(_text_view(encoder={"kind": "hf-mean-pool", "name": "minilm"}))
    resolved = resolve_encoder(view)  # the bundled all-MiniLM-L6-v2 weights
    assert resolved.encoder is not None and resolved.encoder.revision and len(resolved.encoder.revision) == 64
    assert resolved.version != view.version
    missing = FeatureView.model_validate(_text_view(encoder={"kind": "hf", "name": "clip", "path": "/nowhere"}))
    with pytest.raises(ConfigError, match="feature view 'text_emb': its encoder's weights cannot be found"):
        resolve_encoder(missing)


def test_the_repository_definitions_load() -> None:
    definitions = load_definitions(REPO / "features.yaml")
    assert {e.name for e in definitions.entities} == {"sample", "study", "series", "video", "device"}
    assert {v.kind for v in definitions.feature_views} == {"embedding", "metadata"}


def test_cli_apply_list_describe_and_confirmed_removal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ROSETTA_OBJECT_STORE_URL", raising=False)
    file = tmp_path / "features.yaml"
    definitions = {"entities": [{"name": "sample", "join_keys": ["sample_id"]}],
                   "feature_views": [_text_view(), {"name": "meta", "entities": ["sample"], "kind": "metadata",
                                                    "source": "demo",
                                                    "features": [{"name": "width", "dtype": "int64"}]}]}
    file.write_text(yaml.safe_dump(definitions))
    assert main(["features", "apply", "--file", str(file), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["features", "apply", "--file", str(file)]) == 0
    assert "+ add feature view text_emb" in capsys.readouterr().out
    assert main(["features", "list"]) == 0
    listed = capsys.readouterr().out
    assert "text_emb" in listed and "minilm (384 dims)" in listed and "meta" in listed
    assert main(["features", "describe", "meta"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["definition"]["features"] == [{"name": "width", "dtype": "int64", "description": ""}]

    definitions["feature_views"] = [_text_view()]
    file.write_text(yaml.safe_dump(definitions))
    assert main(["features", "apply", "--file", str(file)]) == 3  # not a terminal and no --yes: refused
    assert "nothing applied" in capsys.readouterr().err
    assert main(["features", "apply", "--file", str(file), "--yes"]) == 0
    assert "- REMOVE feature view meta" in capsys.readouterr().out
    assert main(["features", "describe", "meta"]) == 2
    assert "no feature view 'meta'" in capsys.readouterr().err
    assert main(["features", "apply", "--file", str(tmp_path / "missing.yaml")]) == 2
