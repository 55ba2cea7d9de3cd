"""Time alignment: pairing images and text by timestamp (see :func:`transforms.alignment.align.align`)."""

from transforms.alignment.align import AlignSpec, align

__all__ = ["AlignSpec", "align"]
