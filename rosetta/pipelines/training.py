"""A downstream model job: a projection head that aligns image and text embeddings, trained from the feature store.

:func:`train_projection` is what the training DAG runs (``rosetta_train_<name>``, scheduled on the feature
Assets the ingestion DAGs update):

1. **data**: point-in-time retrieval (:meth:`FeatureStore.get_historical_features`, bitemporal) of the
   image and the text embedding views over ``[epoch, as_of)``: one pair per sample that has both, its
   latest values known at ``as_of``; the views' current versions (or pinned ones) are recorded;
2. **split**: a sample is held out for evaluation when the sha256 of its id falls under ``holdout``: the
   same sample is on the same side in every run, so an incremental run never trains on the test set;
3. **train**: two linear heads (image -> d, text -> d, L2-normalised) with the symmetric InfoNCE loss of
   CLIP, full batch or mini-batches, seeded (the same data and spec give the same weights);
4. **evaluate**: recall@k image->text and text->image on the held-out pairs (each image's own caption
   among all held-out captions), before and after training;
5. **artifact**: ``models/<name>/<run>/model.pt`` (state dict + spec) and ``lineage.json`` (feature-view
   versions, encoder identities, data interval, the dataset's content hash, metrics, parent model), then
   ``models/<name>/latest.json`` pointing at it (written last: a run that dies leaves the previous model).

``mode="incremental"`` (the default is ``auto``: incremental once a model exists) fine-tunes the latest model
when at least ``min_new_pairs`` training pairs are new since it, on the new pairs plus a seeded replay sample of
the older ones (``replay`` x as many), so it learns the new data without forgetting the old; with fewer new pairs
the run does nothing (the DAG task is skipped).  Re-running a run rewrites the same artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rosetta.core.config import StrictModel
from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from feature_store import FeatureStore

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ProjectionSpec(StrictModel):
    """A projection-head model job (``models:`` in the sources file)."""

    image_view: str = "image_embedding_efficientnet"
    text_view: str = "text_embedding_minilm"
    versions: dict[str, str] = Field(default_factory=dict, description="view -> pinned version")
    after: list[str] = Field(default_factory=list, description="sources whose feature updates trigger the job")
    dimension: int = Field(default=128, ge=2, le=4096)
    epochs: int = Field(default=200, ge=1)
    fine_tune_epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=512, ge=2)
    learning_rate: float = Field(default=1e-2, gt=0)
    temperature: float = Field(default=0.07, gt=0)
    holdout: float = Field(default=0.2, ge=0, lt=1)
    k: int = Field(default=5, ge=1)
    seed: int = 0
    mode: Literal["auto", "full", "incremental"] = "auto"
    min_new_pairs: int = Field(default=1, ge=1)
    replay: float = Field(default=1.0, ge=0)
    description: str = ""
    owner: str = "rosetta"


class NotEnoughNewData(Exception):
    """An incremental run found fewer new pairs than ``min_new_pairs``: nothing to do."""


def held_out(sample_id: str, share: float) -> bool:
    """Whether a sample belongs to the evaluation split (stable: the sha256 of its id)."""
    return int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000 < share


def pairs(fs: FeatureStore, spec: ProjectionSpec, as_of: datetime) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                           dict[str, Any]]:
    """(sample ids, image vectors, text vectors, lineage) of every sample with both embeddings known at ``as_of``."""
    import numpy as np
    import pyarrow as pa

    views, _ = fs.registry.resolve([spec.image_view, spec.text_view], spec.versions)
    for view in views:
        if view.kind != "embedding":
            raise ConfigError(f"feature view {view.name!r} is a {view.kind} view; the projection job needs embedding "
                              "views", setting="image_view")
    table = fs.get_historical_features(features=[f"{v.name}:embedding" for v in views], start=EPOCH, end=as_of,
                                       full_feature_names=True, versions={v.name: v.version for v in views})
    image_col, text_col = (f"{v.name}__embedding" for v in views)
    table = table.filter(table.column(image_col).is_valid()).filter(table.column(text_col).is_valid())
    latest: dict[str, int] = {}
    ids = table.column("sample_id").to_pylist()
    times = table.column("event_timestamp").to_pylist()
    for row, (sample_id, moment) in enumerate(zip(ids, times, strict=True)):
        if sample_id not in latest or moment >= times[latest[sample_id]]:
            latest[sample_id] = row
    order = sorted(latest)
    rows = [latest[s] for s in order]
    picked = table.take(pa.array(rows, pa.int64()))
    image, text = (np.asarray(picked.column(c).combine_chunks().flatten(), dtype=np.float32)
                   .reshape(len(rows), v.dimension or 0) for c, v in ((image_col, views[0]), (text_col, views[1])))
    digest = hashlib.sha256()
    for sample_id, a, b in zip(order, image, text, strict=True):
        digest.update(sample_id.encode() + b"\0" + a.tobytes() + b.tobytes())
    event_times = [times[r] for r in rows]
    lineage = {
        "feature_views": [v.versioned_name for v in views],
        "encoders": {v.name: v.encoder.model_dump(mode="json") if v.encoder else None for v in views},
        "data_interval": {"start": min(event_times).isoformat() if event_times else None,
                          "end": max(event_times).isoformat() if event_times else None, "as_of": as_of.isoformat()},
        "pairs": len(order), "dataset_sha256": digest.hexdigest(),
    }
    return order, image, text, lineage


def recall_at_k(image: np.ndarray, text: np.ndarray, k: int) -> dict[str, float]:
    """Share of images whose own text is among their ``k`` nearest texts (and the other way round)."""
    import numpy as np

    if len(image) == 0:
        return {"image_to_text": float("nan"), "text_to_image": float("nan")}
    scores = image @ text.T
    k = min(k, len(image))
    own = np.arange(len(image))

    def hits(matrix: np.ndarray) -> float:
        top = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
        return float((top == own[:, None]).any(axis=1).mean())

    return {"image_to_text": hits(scores), "text_to_image": hits(scores.T)}


def train_projection(fs: FeatureStore, name: str, spec: ProjectionSpec, *, run_id: str,
                     as_of: datetime) -> dict[str, Any]:
    """Train (or fine-tune) the projection head ``name`` on the pairs known at ``as_of``; its summary.

    Raises :class:`NotEnoughNewData` in an incremental run with too few new pairs."""
    import numpy as np
    import torch

    from rosetta.core.hashing import safe_name

    store = fs.objects
    ids, image, text, lineage = pairs(fs, spec, as_of)
    test = np.array([held_out(s, spec.holdout) for s in ids], dtype=bool)
    train_ids = [s for s, t in zip(ids, test, strict=True) if not t]
    if len(train_ids) < 2:
        raise ConfigError(f"model {name!r}: {len(train_ids)} training pair(s) with both {spec.image_view} and "
                          f"{spec.text_view} known before {as_of.isoformat()}; ingest more data first",
                          setting="models")
    latest_key = f"models/{safe_name(name)}/latest.json"
    parent = json.loads(store.read_bytes(latest_key)) if store.exists(latest_key) else None
    if parent is not None and parent.get("run_id") == run_id:  # re-running this run: same parent as before
        parent = parent.get("parent")
    incremental = parent is not None and spec.mode != "full"
    if spec.mode == "incremental" and parent is None:
        incremental = False
    train_rows = np.flatnonzero(~test)
    epochs = spec.epochs
    previous_ids: set[str] = set()
    if incremental:
        assert parent is not None
        previous_ids = set(json.loads(store.read_bytes(parent["train_ids_key"])))
        new_rows = [r for r in train_rows if ids[r] not in previous_ids]
        if len(new_rows) < spec.min_new_pairs:
            raise NotEnoughNewData(f"model {name!r}: {len(new_rows)} new training pair(s) since run "
                                   f"{parent['run_id']} (needs {spec.min_new_pairs})")
        old_rows = [r for r in train_rows if ids[r] in previous_ids]
        rng = np.random.default_rng([spec.seed, len(train_rows)])
        replay = min(len(old_rows), round(spec.replay * len(new_rows)))
        replayed = sorted(rng.choice(old_rows, size=replay, replace=False).tolist()) if replay else []
        train_rows = np.array(sorted([*new_rows, *replayed]), dtype=np.int64)
        epochs = spec.fine_tune_epochs

    torch.manual_seed(spec.seed)
    heads = torch.nn.ModuleDict({"image": torch.nn.Linear(image.shape[1], spec.dimension, bias=False),
                                 "text": torch.nn.Linear(text.shape[1], spec.dimension, bias=False)})
    if incremental:
        assert parent is not None
        state = torch.load(io.BytesIO(store.read_bytes(parent["model_key"])), weights_only=True)
        heads.load_state_dict(state["state_dict"])

    def embed(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            a = torch.nn.functional.normalize(heads["image"](torch.from_numpy(image[rows])), dim=-1)
            b = torch.nn.functional.normalize(heads["text"](torch.from_numpy(text[rows])), dim=-1)
        return a.numpy(), b.numpy()

    test_rows = np.flatnonzero(test)
    before = recall_at_k(*embed(test_rows), spec.k)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=spec.learning_rate, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(spec.seed)
    images, texts = torch.from_numpy(image[train_rows]), torch.from_numpy(text[train_rows])
    with torch.enable_grad():  # an encoder loaded earlier in this process may have turned autograd off
        losses = _fit(heads, optimizer, images, texts, epochs, spec, generator)
    after = recall_at_k(*embed(test_rows), spec.k)

    prefix = f"models/{safe_name(name)}/{safe_name(run_id)}"
    buffer = io.BytesIO()
    torch.save({"state_dict": heads.state_dict(), "spec": spec.model_dump(mode="json"),
                "input_dimensions": {"image": int(image.shape[1]), "text": int(text.shape[1])}}, buffer)
    model_key, ids_key = f"{prefix}/model.pt", f"{prefix}/train_ids.json"
    store.write_bytes(model_key, buffer.getvalue(), media_type="application/octet-stream")
    trained_on = sorted(previous_ids | {ids[r] for r in train_rows})
    store.write_bytes(ids_key, json.dumps(trained_on).encode(), media_type="application/json")
    summary: dict[str, Any] = {
        "model": name, "run_id": run_id, "mode": "incremental" if incremental else "full",
        "model_key": model_key, "model_uri": store.uri_for(model_key), "train_ids_key": ids_key,
        **lineage, "train_pairs": len(train_rows), "held_out_pairs": len(test_rows),
        "new_pairs": len([r for r in train_rows if ids[r] not in previous_ids]) if incremental else len(train_rows),
        "replayed_pairs": len([r for r in train_rows if ids[r] in previous_ids]) if incremental else 0,
        "epochs": epochs, "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        f"recall@{spec.k}_before": before, f"recall@{spec.k}": after,
        "parent": parent if parent is None else {k: parent[k] for k in ("run_id", "model_uri", "model_key",
                                                                         "train_ids_key", "dataset_sha256")},
        "trained_at": datetime.now(UTC).isoformat(),
    }
    store.write_bytes(f"{prefix}/lineage.json", json.dumps(summary, indent=2, default=str).encode(),
                      media_type="application/json")
    store.write_bytes(latest_key, json.dumps(summary, default=str).encode(), media_type="application/json")
    log.info("model %s: %s", name, {k: v for k, v in summary.items() if k not in ("encoders",)})
    return summary


def _fit(heads: Any, optimizer: Any, images: Any, texts: Any, epochs: int, spec: ProjectionSpec,
         generator: Any) -> list[float]:
    """Symmetric InfoNCE over shuffled mini-batches; the mean loss of each epoch."""
    import torch

    losses = []
    for _ in range(epochs):
        permutation = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), spec.batch_size):
            batch = permutation[start:start + spec.batch_size]
            if len(batch) < 2:
                continue
            a = torch.nn.functional.normalize(heads["image"](images[batch]), dim=-1)
            b = torch.nn.functional.normalize(heads["text"](texts[batch]), dim=-1)
            logits = a @ b.T / spec.temperature
            target = torch.arange(len(batch))
            loss = (torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(images))
    return losses
