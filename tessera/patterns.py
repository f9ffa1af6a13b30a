r"""Module-name patterns, as ``target_modules`` / ``exclude_modules`` (MUiR) and ``blocks`` (mixtures) take them.

A pattern is one of

* a plain name: matches that module, or any module whose dotted name ends with ``"." + name`` (as PEFT's
  ``target_modules``: ``"q_proj"`` matches ``"model.layers.0.self_attn.q_proj"``);
* a glob (it holds ``*``, ``?`` or ``[``): matched against the whole dotted name (``"layer3.*"``);
* a regular expression, as ``"re:<regex>"`` or a compiled ``re.Pattern``: must match the whole name.

``None`` means "no patterns" (the caller's default). Anything else is a one-line :class:`ConfigError`.

>>> pats = compile_patterns(["fc", "layer3.*", "re:blocks\\.[02]\\.attn"], "target_modules")
>>> [p.text for p in pats if p.matches("encoder.fc")], [p.text for p in pats if p.matches("blocks.2.attn")]
(['fc'], ['re:blocks\\.[02]\\.attn'])
>>> compile_patterns(1, "target_modules")
Traceback (most recent call last):
...
tessera.errors.ConfigError: target_modules must be a module name, a glob ('layer3.*'), 're:<regex>', a compiled re.Pattern or a list of them; got int 1
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import ConfigError

__all__ = ["NamePattern", "compile_patterns", "Patterns"]

Patterns = str | re.Pattern | Sequence[str | re.Pattern] | None
"""What ``target_modules`` / ``exclude_modules`` / ``blocks`` accept."""

_GLOB = set("*?[")


@dataclass(frozen=True)
class NamePattern:
    """One compiled pattern; ``text`` is how the user wrote it (for reports)."""

    text: str
    kind: str                    # "name" | "glob" | "regex"
    regex: re.Pattern | None = None

    def matches(self, name: str) -> bool:
        if self.kind == "regex":
            return self.regex.fullmatch(name) is not None  # type: ignore[union-attr]
        if self.kind == "glob":
            return fnmatch.fnmatchcase(name, self.text)
        return name == self.text or name.endswith("." + self.text)


def _one(p: Any, what: str) -> NamePattern:
    if isinstance(p, re.Pattern):
        return NamePattern(f"re:{p.pattern}", "regex", p)
    if not isinstance(p, str):
        raise ConfigError(f"{what} must be a module name, a glob ('layer3.*'), 're:<regex>', a compiled re.Pattern "
                          f"or a list of them; got {type(p).__name__} {p!r}")
    if p.startswith("re:"):
        try:
            return NamePattern(p, "regex", re.compile(p[3:]))
        except re.error as e:
            raise ConfigError(f"{what}: {p!r} is not a valid regular expression ({e}); fix the regex") from None
    return NamePattern(p, "glob" if _GLOB & set(p) else "name")


def compile_patterns(patterns: Any, what: str) -> list[NamePattern] | None:
    """``None`` -> ``None``; a pattern or a list/tuple of patterns -> compiled list (ConfigError on bad input)."""
    if patterns is None:
        return None
    if isinstance(patterns, (str, re.Pattern)):
        return [_one(patterns, what)]
    if isinstance(patterns, (list, tuple, set, frozenset)):
        out = [_one(p, what) for p in patterns]
        if not out:
            raise ConfigError(f"{what} is an empty list; pass None for the default or name some modules")
        return out
    return [_one(patterns, what)]  # raises with the type in the message
