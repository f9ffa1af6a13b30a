"""Values derived from a tensor (a sorted index, a plan), kept for the last few tensors.

An entry is found by the tensor itself (held weakly, so a new tensor in a freed one's memory is a miss) and
its ``_version`` (an in-place change is a miss) and a key; the newest entry goes first, the oldest beyond
``size`` is dropped, and a stale entry (same tensor and key, older version) is dropped when it is replaced.

>>> cache = TensorCache(2)
>>> t = torch.tensor([3, 1])
>>> cache.get(t, "sorted", lambda: t.sort().values).tolist()
[1, 3]
>>> t[0] = 0                                        # changed in place: computed again
>>> cache.get(t, "sorted", lambda: t.sort().values).tolist()
[0, 1]
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Hashable

import torch
from torch import Tensor

__all__ = ["TensorCache"]


class TensorCache:
    """``get(tensor, key, make)``: ``make()``'s value for this tensor, version and ``key``, cached."""

    def __init__(self, size: int):
        self.size = size
        self._entries: list[tuple[weakref.ref, int, Hashable, Any]] = []

    def get(self, tensor: Tensor, key: Hashable, make: Callable[[], Any]) -> Any:
        for ref, version, k, value in self._entries:
            if ref() is tensor and (version, k) == (tensor._version, key):
                return value
        value = make()
        self._entries[:] = [(weakref.ref(tensor), tensor._version, key, value)] + [
            e for e in self._entries[:self.size - 1] if e[0]() is not None and (e[0]() is not tensor or e[2] != key)]
        return value

    def clear(self) -> None:
        self._entries.clear()
