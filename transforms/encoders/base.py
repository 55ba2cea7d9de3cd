"""Encoder interfaces and helpers shared by the text and image encoders."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rosetta.core.hashing import sha256_files
from schemas.records import EncoderIdentity

if TYPE_CHECKING:
    import numpy as np
    import torch

T = TypeVar("T")
S = TypeVar("S")
U = TypeVar("U")

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


def apply_precision(model: Any, precision: str, device: str) -> tuple[Any, str, Any]:
    """``model`` in the requested precision on ``device``: (model, precision used, input float dtype).

    ``auto`` is fp16 on CUDA (bf16 where the GPU supports it) and fp32 on the CPU.  ``int8`` quantizes the
    linear layers dynamically (CPU only); ``fp16`` needs CUDA.  ConfigError for a combination that cannot run.
    """
    import torch

    from rosetta.core.errors import ConfigError

    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device == "cuda" else "fp32"
    if precision == "int8":
        if device != "cpu":
            raise ConfigError("precision int8 (dynamic quantization) runs on the CPU; use fp16/bf16 on CUDA",
                              setting="precision")
        import warnings

        with warnings.catch_warnings():  # torch 2.13 announces the move of eager quantization to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
            quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return quantized, precision, torch.float32
    if precision == "fp16" and device != "cuda":
        raise ConfigError("precision fp16 needs CUDA; use fp32, bf16 or int8 on the CPU", setting="precision")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return model.to(dtype), precision, dtype


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def prefetched(chunks: Iterable[S], prepare: Callable[[S], U]) -> Iterator[tuple[S, U]]:
    """``(chunk, prepare(chunk))`` in order, preparing the next chunk in a helper thread while the caller works
    on the current one: decoding, resizing and tokenizing (PIL, numpy and the Rust tokenizers release the GIL)
    overlap the model's forward pass instead of adding to it."""
    from concurrent.futures import ThreadPoolExecutor

    iterator = iter(chunks)
    first = next(iterator, None)
    if first is None:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rosetta-prepare") as pool:
        current, pending = first, pool.submit(prepare, first)
        for upcoming in iterator:
            following = pool.submit(prepare, upcoming)
            yield current, pending.result()
            current, pending = upcoming, following
        yield current, pending.result()


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
