"""Tiny name -> object registries (models, blocks, experiments, benchmarks).

Entries may be registered lazily as ``"package.module:attr"`` strings so that the CLI starts fast and
optional heavy imports happen only when an entry is used.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError, TesseraError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """``reg.register("name")(obj)`` or ``reg.register_lazy("name", "mod:attr", help=...)``.

    >>> r = Registry[int]("number")
    >>> _ = r.register("one", help="the number one")(1)
    >>> r.get("one"), r.names()
    (1, ['one'])
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, *, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise TesseraError(f"{self.kind} {name!r} is registered twice; pick another name")
            self._items[name] = obj
            doc = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._help[name] = doc
            return obj
        return deco

    def register_lazy(self, name: str, target: str, *, help: str = "") -> None:
        self._items[name] = target
        self._help[name] = help

    def get(self, name: str) -> T:
        if name not in self._items:
            raise TesseraError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        obj = self._items[name]
        if isinstance(obj, str) and ":" in obj:
            mod, attr = obj.split(":")
            obj = getattr(importlib.import_module(mod), attr)
            self._items[name] = obj
        return obj  # type: ignore[return-value]

    def create(self, name: str, **kwargs: Any) -> Any:
        """``get(name)(**kwargs)``; an unknown or missing argument is a one-line ConfigError.

        >>> r = Registry[Any]("maker")
        >>> _ = r.register("pair")(lambda a, b=0: (a, b))
        >>> r.create("pair", a=1, c=2)
        Traceback (most recent call last):
        ...
        tessera.errors.ConfigError: maker 'pair': <lambda>() got an unexpected keyword argument 'c'; check its arguments
        """
        fn = self.get(name)
        try:
            return fn(**kwargs)  # type: ignore[operator]
        except TypeError as e:
            if "argument" not in str(e):
                raise
            raise ConfigError(f"{self.kind} {name!r}: {e}; check its arguments") from None

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self.get(n)) for n in self.names()]
