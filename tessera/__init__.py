"""tessera: neural networks built from reusable components.

Template-mixture (compositional) networks, MUiR hypermodules over any PyTorch model, and compatible
feature extractors / heads — sharing one batched weight-generation core (``tessera.core``).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import TesseraError  # noqa: E402

__all__ = ["__version__", "TesseraError"]
