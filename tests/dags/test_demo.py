"""The README's main command, as a new user runs it: `rosetta demo` (what `make demo` calls),
twice, then the example lookup script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dags, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_demo_ingests_the_photos_then_stores_nothing_new(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "ROSETTA_HOME": str(tmp_path / "rosetta"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"}
    rosetta = str(Path(sys.executable).with_name("rosetta"))

    first = subprocess.run([rosetta, "demo"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "new records:       14   unchanged: 0   quarantined: 0" in out
    assert "objects written:   28" in out and "new points: 28, total: 28" in out
    assert "demo_photos/chelsea: image: 1280-d by efficientnet-lite0@" in out
    hits = out.split("similarity search over captions: 'a cat'")[1].strip().splitlines()
    assert "demo_photos/chelsea" in hits[0]
    assert "feature views (applied): " in out and "text_embedding_minilm@v" in out
    view_hits = out.split("FeatureStore.search_view('text_embedding_minilm', 'a cat')")[1].strip().splitlines()
    assert "demo_photos/chelsea" in view_hits[0]

    second = subprocess.run([rosetta, "demo"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "new items listed:  0" in second.stdout
    assert "feature views (unchanged): " in second.stdout
    assert "nothing new stored: no file changed since the last committed run" in second.stdout
    assert "objects written:   0 " in second.stdout and "new points: 0, total: 28" in second.stdout

    example = subprocess.run([sys.executable, str(REPO / "examples" / "lookup_features.py"), "demo_photos/coffee"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert example.returncode == 0, example.stderr[-3000:]
    assert "image vector (1280,)" in example.stdout and "latte" in example.stdout
