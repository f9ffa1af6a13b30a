"""MUiR settings (paper 003): block size, context size, (1+lambda)-EA search and its schedule.

Defaults are the paper's cross-architecture settings (§4.2 / S.4): 16x16 blocks, c = 4, lambda = 1,
lr_s = 0.1, n_iter = 1000, n_init = 2000. :meth:`MuirConfig.synthetic` gives the §4.1 settings.

>>> MuirConfig().initial_score()          # alpha = lambda / (lambda + 1): no bias to the incumbent
0.0
>>> MuirConfig(context=-1).validate()          # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tessera.errors.ConfigError: MuirConfig.context must be >= 0 (got -1); use c >= 1 ...
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["MuirConfig"]


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class MuirConfig:
    """Every knob of MUiR, with the paper's meaning in the help text."""

    block: tuple[int, int] = _help("(m, n): a block maps m input units to n output units (§3.1)", (16, 16))
    context: int = _help("c: context size; H_k is c x m x n and z_l has c entries (Eq. 5); 0: no context, the "
                         "blocks are the hypermodules themselves, shared exactly (Table 7's c = 0)", 4)
    lam: int = _help("lambda: challengers per location each generation; lambda+1 candidates soft-merged (Eq. 8)", 1)
    p: float = _help("fraction of locations (per group) that get new candidates each generation (S.3)", 0.5)
    eps: float = _help("probability of sampling an unused hypermodule (Eq. 13)", 1e-4)
    lr_scores: float = _help("learning rate of the soft-merge scores s_l (S.3)", 0.1)
    n_init: int = _help("training steps with Eq. 5 before the search starts (Alg. 2 line 3)", 2000)
    n_iter: int = _help("training steps per generation (Alg. 2 line 14)", 1000)
    n_final: int = _help("training steps with the alignment fixed after restoring the best state (Alg. 2 line 19)", 0)
    n_generations: int = _help("number of search generations (Alg. 2 line 4)", 1000)
    alpha: float | None = _help("initial total belief of the challengers (Eq. 12); None: lambda/(lambda+1)", None)
    seed: int = _help("seed of the search's own torch.Generator (identical on every DDP rank)", 0)
    selection: Literal["belief", "random"] = _help(
        "'belief': argmax of summed softmax beliefs; 'random': a random candidate (MUiR+Random)", "belief")
    z_rule: Literal["variance", "paper"] = _help(
        "Eq. 7 context magnitude: 'variance' |z| = sigma/(sqrt(c) sigma_H) keeps Var(B) = sigma^2 exactly; "
        "'paper' |z| = sigma/(c sigma_H) as printed (equal when c = 1)", "variance")

    @classmethod
    def synthetic(cls, **overrides: Any) -> "MuirConfig":
        """The §4.1 / S.4 settings for the 30 linear tasks (block 20x1, c = 1, lambda = 4, lr_s = 0.01)."""
        base = dict(block=(20, 1), context=1, lam=4, p=0.5, eps=1e-4, lr_scores=0.01, n_init=0, n_iter=100,
                    n_final=20_000, n_generations=1000)
        base.update(overrides)
        return cls(**base).validate()

    def validate(self) -> "MuirConfig":
        """Raise ConfigError (one line) on an impossible value; return self."""
        blk = tuple(self.block) if isinstance(self.block, (tuple, list)) else ()
        if len(blk) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in blk):
            raise ConfigError(f"MuirConfig.block must be two positive ints (m, n), got {self.block!r}; "
                              f"e.g. block=(16, 16)")
        self.block = (int(blk[0]), int(blk[1]))
        checks = [
            (self.context >= 0,
             f"context must be >= 0 (got {self.context}); use c >= 1 (the paper: c = 4, or 1 for linear tasks) "
             f"or 0 for exactly shared blocks"),
            (self.lam >= 0, f"lam must be >= 0 (got {self.lam}); lambda = 0 disables the search"),
            (0.0 < self.p <= 1.0, f"p must be in (0, 1] (got {self.p}); the paper uses 0.5"),
            (0.0 <= self.eps < 1.0, f"eps must be in [0, 1) (got {self.eps}); the paper uses 1e-4"),
            (self.lr_scores > 0, f"lr_scores must be > 0 (got {self.lr_scores}); the paper uses 0.01 or 0.1"),
            (min(self.n_init, self.n_iter, self.n_final, self.n_generations) >= 0,
             "n_init, n_iter, n_final and n_generations must be >= 0"),
            (self.alpha is None or 0.0 < self.alpha < 1.0, f"alpha must be in (0, 1) or None (got {self.alpha})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"MuirConfig.{msg}")
        if self.selection not in ("belief", "random"):
            raise ConfigError(f"MuirConfig.selection must be 'belief' or 'random', got {self.selection!r}")
        if self.z_rule not in ("variance", "paper"):
            raise ConfigError(f"MuirConfig.z_rule must be 'variance' or 'paper', got {self.z_rule!r}")
        return self

    def initial_score(self) -> float:
        """s_li for the challengers when s_l0 = 0 (Eq. 12); 0 for the paper's alpha = lambda/(lambda+1)."""
        if self.lam == 0 or self.alpha is None:
            return 0.0
        return math.log(self.alpha) - math.log(self.lam) - math.log(1.0 - self.alpha)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block"] = list(self.block)
        return d
