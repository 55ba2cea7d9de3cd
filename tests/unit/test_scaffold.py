"""`rosetta connector new` writes a connector that works and passes the contract suite as generated."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from connectors.sdk import registry
from rosetta.core.errors import ConfigError
from rosetta.scaffold import scaffold_connector
from tests.contract import test_connector_contract as contract

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path, module_name: str) -> object:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def test_scaffolded_connector_passes_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   request: pytest.FixtureRequest) -> None:
    root = tmp_path / "project"
    (root / "connectors" / "sdk").mkdir(parents=True)
    shutil.copyfile(REPO / "connectors" / "sdk" / "registry.py", root / "connectors" / "sdk" / "registry.py")
    written = scaffold_connector("lab_notes", root)
    assert {p.name for p in written} == {"lab_notes.py", "harness_lab_notes.py", "test_lab_notes.py", "registry.py"}
    registry_text = (root / "connectors" / "sdk" / "registry.py").read_text()
    assert '"lab_notes": "connectors.lab_notes:LabNotesConnector",' in registry_text
    assert len((root / "connectors" / "lab_notes.py").read_text().splitlines()) < 80  # a few dozen lines

    monkeypatch.delitem(sys.modules, "connectors.lab_notes", raising=False)
    _load(root / "connectors" / "lab_notes.py", "connectors.lab_notes")
    monkeypatch.setitem(registry.BUILTIN, "lab_notes", "connectors.lab_notes:LabNotesConnector")
    harness = _load(root / "tests" / "contract" / "harness_lab_notes.py", "harness_lab_notes").HARNESS  # type: ignore[attr-defined]
    for check in (contract.test_config_is_strict_and_misconfiguration_is_a_config_error,
                  contract.test_lists_and_fetches_records_with_utc_times_and_stable_ids,
                  contract.test_incremental_second_run_lists_nothing_then_only_what_is_new,
                  contract.test_bad_records_are_quarantinable_and_the_rest_goes_on):
        case = tmp_path / check.__name__
        case.mkdir()
        check(harness, harness.make_source(case, request))
    generated_test = _load(root / "tests" / "unit" / "test_lab_notes.py", "test_lab_notes_generated")
    (tmp_path / "unit").mkdir()
    generated_test.test_lab_notes_reads_one_record_per_document(tmp_path / "unit")  # type: ignore[attr-defined]
    sys.modules.pop("connectors.lab_notes", None)


def test_scaffold_refuses_bad_names_and_overwrites(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lower_snake_case"):
        scaffold_connector("Bad-Name", tmp_path, register=False)
    scaffold_connector("notes", tmp_path, register=False)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        scaffold_connector("notes", tmp_path, register=False)
