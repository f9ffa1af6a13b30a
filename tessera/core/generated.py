"""Base class for modules that generate another module's weights before each forward."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .bind import WeightWriter

__all__ = ["WeightGenerator", "GeneratedModel"]


class WeightGenerator(nn.Module):
    """Owns banks + contexts (as Parameters) and writes generated weights into a root module.

    Subclasses implement :meth:`source` (the flat generated vector for the current state, built with
    :func:`tessera.core.mix`) and set ``self.writer``. :meth:`attach` registers hooks on the root so
    that every ``root(x)`` regenerates its weights in one batched op first — the root remains an
    ordinary ``nn.Module`` (state_dict, deepcopy, DDP, torch.compile with a graph break at the hook).
    """

    writer: WeightWriter

    def source(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def refresh(self) -> None:
        """Generate now and bind into the target modules (also usable outside a forward)."""
        self.writer.write(self.source())

    def release(self) -> None:
        """Replace bound graph tensors by detached values (keeps the target inspectable/copyable)."""
        self.writer.detach()

    @torch.no_grad()
    def materialize(self) -> list[Tensor]:
        """Current generated values of every slot (detached), in slot order."""
        return [t.detach().clone() for t in self.writer.tensors(self.source())]

    def attach(self, root: nn.Module) -> tuple[RemovableHandle, RemovableHandle]:
        """Regenerate before and release after every ``root`` forward."""
        pre = root.register_forward_pre_hook(self._pre_hook)
        post = root.register_forward_hook(self._post_hook)
        return pre, post

    def _pre_hook(self, module: nn.Module, args: Any) -> None:
        self.refresh()

    def _post_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self.release()


class GeneratedModel(nn.Module):
    """An ordinary module = a target ``model`` + the ``generator`` that writes its weights.

    ``forward`` regenerates all generated weights in one batched op, runs the model, then releases
    the graph tensors. State dict keys are ``model.*`` (the model's own remaining parameters and
    buffers) and ``generator.*`` (banks, contexts).
    """

    def __init__(self, model: nn.Module, generator: WeightGenerator):
        super().__init__()
        self.model = model
        self.generator = generator

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.generator.refresh()
        try:
            return self.model(*args, **kwargs)
        finally:
            self.generator.release()
