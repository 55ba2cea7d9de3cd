"""Encoder interfaces and helpers shared by the text and image encoders."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rosetta.core.hashing import sha256_files
from schemas.records import EncoderIdentity

if TYPE_CHECKING:
    import numpy as np
    import torch

T = TypeVar("T")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def pick_device(requested: str) -> str:
    """``auto`` means CUDA when torch sees a GPU, else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from rosetta.core.errors import ConfigError

        raise ConfigError("encoder device 'cuda' requested but torch sees no GPU; use device 'auto' or 'cpu'",
                          setting="ROSETTA_ENCODER_DEVICE")
    return requested


@lru_cache(maxsize=32)
def _weights_revision_cached(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return sha256_files([entry[0] for entry in stamp])


def weights_revision(path: Path) -> str:
    """sha256 over the weight files at ``path`` (a file, or every weight file in a directory).

    Cached per process by (name, size, mtime) so reloading is cheap.
    """
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    stamp = tuple((str(p), p.stat().st_size, int(p.stat().st_mtime_ns)) for p in files)
    return _weights_revision_cached(str(path), stamp)


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def l2_normalise(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.normalize(tensor.float(), p=2, dim=-1)


class Encoder(ABC):
    """Turns inputs of one modality into L2-normalised float32 vectors."""

    identity: EncoderIdentity
    device: str

    @property
    def dimension(self) -> int:
        return self.identity.dimension


class TextEncoder(Encoder):
    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dimension]`` float32, unit length."""


class ImageEncoder(Encoder):
    @abstractmethod
    def encode(self, images: Sequence[Any]) -> np.ndarray:
        """Encode PIL images or encoded image bytes: ``[n, dimension]`` float32, unit length."""


def torch_threads() -> None:
    """Keep torch from oversubscribing small machines (Airflow runs several tasks at once)."""
    import torch

    wanted = int(os.environ.get("ROSETTA_TORCH_THREADS", "0") or 0)
    if wanted > 0:
        torch.set_num_threads(wanted)
