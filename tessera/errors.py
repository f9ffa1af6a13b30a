"""One exception family whose message is a single line that names the problem and the fix."""
from __future__ import annotations


class TesseraError(Exception):
    """Base class. ``str(err)`` is one line: what is wrong, then what to do about it."""


class ConfigError(TesseraError, ValueError):
    """A configuration key, value or type is wrong."""


class DataError(TesseraError, OSError):
    """A data file is missing, corrupt or of the wrong format."""


class CheckpointError(TesseraError):
    """A checkpoint is missing, incomplete, or does not match the current run."""


class TrainingError(TesseraError, RuntimeError):
    """Training cannot continue (e.g. a non-finite loss)."""


class ShapeError(TesseraError, ValueError):
    """Tensors, blocks or components do not fit together."""


class TesseraWarning(UserWarning):
    """Something was recovered, not refused (e.g. a corrupt checkpoint skipped for the previous one)."""
