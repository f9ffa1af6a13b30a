"""Where datasets live: ``--data-root`` > ``$TESSERA_DATA`` > ``$XDG_CACHE_HOME/tessera/data`` (~/.cache).

>>> import os
>>> str(resolve_root("/srv/data"))
'/srv/data'
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_root", "ENV_VAR"]

ENV_VAR = "TESSERA_DATA"


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root as an absolute path: explicit ``root`` > env ``TESSERA_DATA`` > user cache dir.

    The default is ``$XDG_CACHE_HOME/tessera/data``, i.e. ``~/.cache/tessera/data``. Nothing is created.
    """
    if root is None or str(root) == "":
        root = os.environ.get(ENV_VAR) or None
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "tessera", "data")
    return Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
