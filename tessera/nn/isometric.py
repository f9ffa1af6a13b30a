"""Isometric networks (paper 002, §3.1, §4.1, App. A.1): input adapter, body of identical blocks,
output adapter, head (paper 002 Table 7 calls it "logits").

>>> from tessera.nn import create_model
>>> net = create_model("isometric_small", num_classes=10, depth=4)
>>> x = torch.randn(2, 1, 28, 28)
>>> net.forward_features(x).shape, net.forward_embedding(x).shape, net(x).shape
(torch.Size([2, 24, 14, 14]), torch.Size([2, 256]), torch.Size([2, 10]))
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from ..registry import Registry
from .blocks import BLOCKS, create_act, global_avg_pool, make_divisible

__all__ = ["isometric_body", "IsometricNet", "MODELS", "create_model", "param_table", "BLOCK_INPUT_MODES"]

LayerFactory = Callable[..., nn.Module]
BLOCK_INPUT_MODES = ("none", "add", "concat")

MODELS: Registry = Registry("model")
"""Model factories by name; use :func:`create_model`."""


def isometric_body(input_adapter: nn.Module, blocks: Iterable[nn.Module], x: torch.Tensor,
                   block_input: str = "none", channels_last: bool = False,
                   block_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    """The isometric body: input adapter, then every block at constant width (paper 002 App. A.1).

    ``block_input``: ``"none"`` (h <- blk(h)), ``"add"`` (h <- blk(h + z0)) or ``"concat"`` (the block
    also receives the adapter output z0: h <- blk(h, z0); Table 6). ``block_kwargs`` go to every block
    (e.g. an attention mask). The one implementation used by IsometricNet, MixtureNet and a exported
    MixtureNet. When the input adapter is a patch conv (``input_adapter.conv`` with kernel = stride),
    ``x`` is checked to fit it (:func:`check_patch_input`).
    """
    conv = getattr(input_adapter, "conv", None)
    if isinstance(conv, nn.Conv2d) and conv.kernel_size == conv.stride:
        check_patch_input(x, conv.in_channels, conv.stride[0])
    kw = block_kwargs or {}
    z0 = input_adapter(x)                                   # (N, in, H, W) -> (N, C, H/p, W/p)
    if channels_last and z0.dim() == 4:
        z0 = z0.contiguous(memory_format=torch.channels_last)  # NHWC strides, same shape
    h = z0
    if block_input == "concat":
        for blk in blocks:
            h = blk(h, z0, **kw)                            # block sees cat(h, z0): (N, 2C, H', W')
    elif block_input == "add":
        for blk in blocks:
            h = blk(h + z0, **kw)
    else:
        for blk in blocks:
            h = blk(h, **kw)                                # (N, C, H', W') -> (N, C, H', W')
    return h


def check_patch_input(x: torch.Tensor, in_chans: int, patch: int) -> None:
    """ShapeError unless ``x`` is ``(N, in_chans, H, W)`` with H and W multiples of ``patch`` (a patch
    conv would silently drop the remainder rows and columns)."""
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != in_chans:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ShapeError(f"expected input (N, {in_chans}, H, W), got {got}; "
                         f"build the model with in_chans={x.shape[1] if torch.is_tensor(x) and x.dim() == 4 else '?'}")
    if not x.is_floating_point():
        raise ShapeError(f"expected a floating-point image tensor, got {str(x.dtype).replace('torch.', '')}; "
                         "convert it with x.float() (and scale to [0, 1])")
    h, w = x.shape[-2:]
    if h < patch or w < patch or h % patch or w % patch:
        raise ShapeError(f"input size {h}x{w} is not a multiple of patch={patch}; "
                         f"pad or crop the images, or choose another patch")


class GlobalAvgPool(nn.Module):
    """Average over H, W keeping dims: (N, C, H, W) -> (N, C, 1, 1), as ``AdaptiveAvgPool2d(1)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_avg_pool(x)


class IsometricNet(nn.Module):
    """Isometric network: every block maps the same activation space (C x H' x W') to itself.

    * ``input_adapter``: conv with kernel = stride = ``patch`` + BN + act, (N, in_chans, H, W) ->
      (N, C, H/patch, W/patch);
    * ``blocks``: ``depth`` identical blocks from :data:`~tessera.nn.blocks.BLOCKS`;
    * ``output_adapter``: 1x1 conv to c1 + act, global average pool, 1x1 conv to c2 + act, flatten;
    * ``dropout`` then ``head`` (Linear c2 -> num_classes; the paper's "logits" layer).

    ``block_input_mode`` (paper 002, App. B, Table 6: every block also sees the input adapter's
    output besides the previous block's): ``"none"`` (default); ``"concat"`` - each block also
    gets the input adapter's output, concatenated to its input before its first conv (the residual
    still adds the previous layer's output only); ``"add"`` - each block's input is the previous
    output plus the input adapter's output (no extra parameters).

    ``channels_last=True`` runs the body on NHWC-strided activations (same shapes, same math, same
    parameters): oneDNN's depthwise, 1x1 conv and batch-norm kernels are faster on them on CPU.
    ``forward_features`` then returns a channels-last tensor (call ``.contiguous()`` before
    ``.view``). Parameters keep whatever layout they have, so reparameterization code may write
    ordinary contiguous tensors into them.

    >>> net = IsometricNet(10, channels=16, depth=2, head_channels=(32, 64))
    >>> net(torch.randn(3, 1, 28, 28)).shape
    torch.Size([3, 10])
    """

    def __init__(self, num_classes: int, in_chans: int = 1, channels: int = 24, depth: int = 16,
                 patch: int = 2, block: str = "inverted_residual",
                 block_kwargs: dict[str, Any] | None = None,
                 head_channels: tuple[int, int] = (128, 256), dropout: float = 0.2,
                 act_layer: LayerFactory = nn.Hardswish, norm_layer: LayerFactory = nn.BatchNorm2d,
                 block_input_mode: str = "none", channels_last: bool = True):
        super().__init__()
        for name, v in (("num_classes", num_classes), ("in_chans", in_chans), ("channels", channels),
                        ("depth", depth), ("patch", patch)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if (not isinstance(head_channels, (tuple, list)) or len(head_channels) != 2
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in head_channels)):
            raise ConfigError(f"head_channels must be (c1, c2) positive ints, got {head_channels!r}")
        if block_input_mode not in BLOCK_INPUT_MODES:
            raise ConfigError(f"unknown block_input_mode {block_input_mode!r}; choose one of: "
                              f"{', '.join(BLOCK_INPUT_MODES)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout is a drop probability in [0, 1), got {dropout}")
        c1, c2 = head_channels
        self.num_classes, self.in_chans, self.channels, self.patch = num_classes, in_chans, channels, patch
        self.block_name, self.block_input_mode = block, block_input_mode
        self.embed_dim = c2
        self.channels_last = channels_last

        self.input_adapter = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_chans, channels, patch, stride=patch, bias=False),
            bn=norm_layer(channels),
            act=create_act(act_layer)))
        kw: dict[str, Any] = {"act_layer": act_layer, "norm_layer": norm_layer, **(block_kwargs or {})}
        if block_input_mode == "concat":
            kw["context_chans"] = channels
        block_fn = BLOCKS.get(block)
        self.blocks = nn.ModuleList(block_fn(channels, **kw) for _ in range(depth))
        self.output_adapter = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(channels, c1, 1, bias=True),
            act1=create_act(act_layer),
            pool=GlobalAvgPool(),
            conv2=nn.Conv2d(c1, c2, 1, bias=True),
            act2=create_act(act_layer),
            flatten=nn.Flatten(1)))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c2, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MobileNet-style init: He (fan-out) convs, unit BN, small-normal head, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, C, H/patch, W/patch), the body's output (input checked by the body)."""
        return isometric_body(self.input_adapter, self.blocks, x, self.block_input_mode, self.channels_last)

    def forward_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, c2), the output adapter's embedding."""
        return self.output_adapter(self.forward_features(x))   # (N, C, H', W') -> (N, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_classes) logits."""
        return self.head(self.dropout(self.forward_embedding(x)))  # (N, c2) -> (N, classes)


def _channels(width_mult: float) -> int:
    """Tensor width for depth multiplier % (paper: 40% channels, rounded to a multiple of 8)."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not 0 < width_mult <= 1e4:
        raise ConfigError(f"width_mult must be a number in (0, 1e4], got {width_mult!r}")
    return make_divisible(40 * width_mult, 8)


@MODELS.register("isometric_small", help="24 channels (% = 0.6), output adapter (128, 256)")
def isometric_small(num_classes: int = 10, width_mult: float = 0.6, depth: int = 16,
                    **kwargs: Any) -> IsometricNet:
    """The paper's smaller design: 40·0.6 = 24-channel tensors, c1 = 128, c2 = 256."""
    kwargs.setdefault("head_channels", (128, 256))
    return IsometricNet(num_classes, channels=_channels(width_mult), depth=depth, **kwargs)


@MODELS.register("isometric_large", help="40 channels (% = 1), output adapter (960, 1280)")
def isometric_large(num_classes: int = 10, width_mult: float = 1.0, depth: int = 16,
                    **kwargs: Any) -> IsometricNet:
    """The paper's larger design: 40-channel tensors, c1 = 960, c2 = 1280 (1.27M-param adapter)."""
    kwargs.setdefault("head_channels", (960, 1280))
    return IsometricNet(num_classes, channels=_channels(width_mult), depth=depth, **kwargs)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model: ``create_model("isometric_small", num_classes=10, depth=8)``.

    Unknown names raise :class:`~tessera.errors.TesseraError` listing the choices; unknown or missing
    arguments a :class:`~tessera.errors.ConfigError`.
    """
    return MODELS.create(name, **kwargs)


# Paper 002, Table 7: approximate parameter counts per component (logits: per class C).
_PAPER_TABLE7 = {
    (24, 128, 256): {"name": "Smaller (%=0.6)", "input_adapter": 1200, "block_se": 20000,
                     "block_nose": 9000, "output_adapter": 37000, "logits_per_class": 256},
    (40, 960, 1280): {"name": "Larger (%=1)", "input_adapter": 2000, "block_se": 52000,
                      "block_nose": 22000, "output_adapter": 1.27e6, "logits_per_class": 1280},
}


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def param_table(model: IsometricNet) -> list[dict[str, Any]]:
    """Parameters per component beside the paper's Table 7 (approximate) numbers.

    Rows: ``component, params, paper, formula, note``. ``paper`` comes from Table 7 when the model
    has one of its two designs (24/128/256 or 40/960/1280 channels), else from the paper's
    formulas where it gives one. The paper's input adapter (2000·%) is for RGB input and a 4x4
    patch: 40%·(3·4·4) conv weights + 2·40% BN; ours is 40%·(in_chans·patch²) + 2·40%, e.g. 144 for
    MNIST (1 channel, patch 2) at 24 channels. Block and adapter counts match the table's to within
    its rounding (block with SE at 24 channels: 19380 vs ~20000).

    >>> from tessera.nn import create_model
    >>> rows = param_table(create_model("isometric_small", in_chans=3, patch=4))
    >>> [(r["component"], r["params"], r["paper"]) for r in rows][:2]
    [('input_adapter', 1200, 1200), ('block (with SE)', 19380, 20000)]
    """
    if not isinstance(model, IsometricNet):
        raise ConfigError(f"param_table expects an IsometricNet, got {type(model).__name__}")
    c = model.channels
    c1, c2 = model.output_adapter.conv1.out_channels, model.embed_dim
    ncls = model.num_classes
    ref = _PAPER_TABLE7.get((c, c1, c2))
    pct = c / 40
    blk = model.blocks[0]
    has_se = isinstance(getattr(blk, "se", None), nn.Module) and not isinstance(blk.se, nn.Identity)
    block_label = "block (with SE)" if has_se else ("block (without SE)" if hasattr(blk, "se") else
                                                    f"block ({model.block_name})")
    rows = [
        {"component": "input_adapter", "params": _n(model.input_adapter),
         "paper": ref["input_adapter"] if ref else round(2000 * pct),
         "formula": "2000*% (paper: RGB, 4x4 patch)",
         "note": f"ours: {c}*{model.in_chans}*{model.patch}^2 conv + {2 * c} BN"},
        {"component": block_label, "params": _n(blk),
         "paper": (ref["block_se" if has_se else "block_nose"] if ref and hasattr(blk, "se") else None),
         "formula": "expansion 6, dw 3x3, SE 1/4" if has_se else "expansion 6, dw 3x3",
         "note": "BN running stats not counted" + (", +context conv" if blk.context_chans else "")},
        {"component": f"body ({len(model.blocks)} blocks)", "params": _n(model.blocks), "paper": None,
         "formula": "depth * block", "note": ""},
        {"component": "output_adapter", "params": _n(model.output_adapter),
         "paper": ref["output_adapter"] if ref else 40 * pct * c1 + c1 * c2 + c1 + c2,
         "formula": "40%*c1 + c1*c2 + c1 + c2", "note": f"c1={c1}, c2={c2}"},
        {"component": "logits", "params": _n(model.head),
         "paper": c2 * ncls + ncls, "formula": "c2*C + C", "note": f"C={ncls}"},
        {"component": "total", "params": _n(model), "paper": None, "formula": "", "note": ""},
    ]
    return rows
