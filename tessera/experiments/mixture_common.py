"""Shared parts of the template-mixture experiments: digit-domain tasks, the co-trained models of a
table row, their training and transfer, and self-organization rows (the clustering-strength sweep is
in :mod:`.mixture_alpha`).

Training is the library's :func:`tessera.mixture.train_tasks` (the one engine); per-unit results and
step-level resume are :class:`tessera.experiments.units.Units`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..mixture.training import TaskSplit

__all__ = ["domain_tasks", "Model", "transfer_from_best", "train_row", "add_organization_rows", "slug",
           "digit_pair_kind", "mean"]


def mean(xs: Any) -> float:
    xs = list(xs)
    return sum(xs) / max(1, len(xs))


def domain_tasks(datasets: Sequence[str], kinds: Sequence[str], *, root: Any = None, split: str = "test",
                 n_eval: int = 2000, n_train: int | None = None, size: int = 28, seed: int = 0
                 ) -> dict[str, TaskSplit]:
    """``{"<dataset>-<kind>": (x_train, y_train, x_eval, y_eval)}`` from one split of each dataset.

    The split is permuted with ``seed``; its last ``n_eval`` images are held out for evaluation, the
    rest (at most ``n_train``) train. Every task of a dataset uses the same images under its own
    augmentation (``tessera.data.digit_domain``).
    """
    from ..data import load_images
    from ..data.domains import digit_domain

    out: dict[str, TaskSplit] = {}
    for d in datasets:
        x, y = load_images(d, split, root)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        ev, tr = perm[len(y) - n_eval:], perm[:len(y) - n_eval]
        if n_train is not None:
            tr = tr[:n_train]
        for i, k in enumerate(kinds):
            xt = digit_domain(x[tr], k, size=size, seed=seed + 2 * i)
            xe = digit_domain(x[ev], k, size=size, seed=seed + 2 * i + 1)
            out[f"{d}-{k}"] = TaskSplit(xt, y[tr].clone(), xe, y[ev].clone())
    return out


def digit_pair_kind(a: str, b: str) -> str:
    """Fig. 2b's pair types of ``"<dataset>-<augmentation>"`` tasks."""
    da, ka = a.rsplit("-", 1)
    db, kb = b.rsplit("-", 1)
    return "same_augmentation" if ka == kb else "same_dataset" if da == db else "unrelated"


@dataclass(frozen=True)
class Model:
    """One co-trained model of a results row: a Table 8 variant (:data:`tessera.mixture.VARIANTS`),
    K = ``k_per_layer`` x L templates (mixtures only) and the mixture-logit init."""

    label: str
    variant: str
    k_per_layer: int = 1
    init: str = "random"

    @property
    def mixture(self) -> bool:
        return self.variant.startswith("mixture")

    def build(self, heads: Mapping[str, int], depth: int, seed: int, arch: Mapping[str, Any]):
        from ..mixture import multitask_model

        torch.manual_seed(seed)
        k = self.k_per_layer * depth if self.mixture else None
        return multitask_model(self.variant, dict(heads), depth=depth, num_templates=k, init=self.init, seed=seed,
                               **arch)

    def describe(self) -> dict[str, Any]:
        return {"variant": self.variant, "K": f"{self.k_per_layer}L" if self.mixture else "L (fixed)",
                "init": self.init if self.mixture else "-"}


def transfer_from_best(net: Any, data: TaskSplit, accs: Mapping[str, float], what: Sequence[str], *, steps: int,
                       batch: int, seed: int, salt: int, device: str, out_dir: Any, checkpoint_every: int
                       ) -> dict[str, Any]:
    """Add a new task to ``net`` from the co-trained task with the best accuracy ``accs`` on the
    target's training images (its mixture logits, BN patches and statistics, and head are copied),
    fine-tune only ``what`` (see :func:`tessera.mixture.trainable_parameters`) on ``data``, and
    return ``{"source", "init", "acc", "trained_params"}`` (held-out accuracy before and after)."""
    from ..mixture import accuracy, count_parameters, from_source, trainable_parameters, train_tasks
    from ..train import mix_seed

    src = max(sorted(accs), key=lambda s: accs[s])
    name = f"new_{salt}"
    torch.manual_seed(mix_seed(seed, 7, salt))       # this run's dropout, whatever ran before it
    from_source(net, name, src, num_classes=int(data[1].max()) + 1, copy_head=True)
    init = accuracy(net, name, data[2], data[3])
    flags = {p: p.requires_grad for p in net.parameters()}
    params = trainable_parameters(net, name, what)
    try:
        r = train_tasks(net, {name: data}, steps=steps, batch=batch, seed=seed, device=device, params=params, ema=0.0,
                        out_dir=out_dir, checkpoint_every=checkpoint_every)
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
    return {"source": src, "source_acc": accs[src], "init": init, "acc": r["acc"][name],
            "trained_params": count_parameters(params)}


def train_row(work: Any, row: Model, seed: int, tasks: Mapping[str, TaskSplit],
              val: Mapping[str, tuple[torch.Tensor, torch.Tensor]], heads: Mapping[str, int], b: Mapping[str, Any],
              arch: Mapping[str, Any], alpha: float, device: str, out_dir: Any = None) -> tuple[Any, dict[str, Any]]:
    """Build ``row``'s model for ``seed`` and co-train it on ``tasks`` with clustering strength ``alpha``
    (engine run in ``out_dir``, default ``work / "train"``; a finished run there is only reloaded).

    Returns ``(net, result)``: ``acc`` / ``loss`` on the evaluation parts, ``val_acc`` on ``val``,
    training-set scores, and for mixtures the initial and final mixture weights, their mean largest
    weight and :func:`~.mixture_alpha.regularizer_balance`.
    """
    from ..mixture import evaluate_split, train_tasks
    from .mixture_alpha import clustering_loss, regularizer_balance

    net = row.build(heads, b["depth"], seed, arch)
    w0 = net.mixture_weights()
    res = train_tasks(net, tasks, steps=b["steps"], batch=b["batch"], seed=seed, device=device,
                      regularizer=clustering_loss(net, alpha if row.mixture else 0.0),
                      recalibrate=b.get("recalibrate", 0), out_dir=Path(out_dir) if out_dir else work / "train",
                      checkpoint_every=b["ckpt"], score_train=b.get("score_train", 0))
    res["val_acc"] = {t: evaluate_split(net, t, x, y)["accuracy"] for t, (x, y) in val.items()}
    if row.mixture:
        w = net.mixture_weights()
        res["weights_init"] = {t: v.tolist() for t, v in w0.items()}
        res["weights"] = {t: v.tolist() for t, v in w.items()}
        res["confidence"] = float(torch.stack(list(w.values())).max(-1).values.mean())
        res["balance"] = regularizer_balance(net, tasks)
    return net, res


def slug(s: str) -> str:
    """A file-name-safe version of a row label."""
    return "".join(c if c.isalnum() else "_" for c in s).strip("_")


def add_organization_rows(rep: Any, row: Model, runs: Sequence[Mapping[str, Any]], out_dir: Any, what: str,
                          pair_kind: Callable[[str, str], str] | None = None, kinds: Sequence[str] = ("all",)
                          ) -> dict[str, Any]:
    """Self-organization rows of a mixture row (one value per seed): the fraction of task pairs of each
    kind sharing the argmax template in the early / late half of the layers, the fraction of layer
    choices that moved from their init, the mean largest mixture weight; and seed 0's heatmap PNG.
    Returns seed 0's details (heatmap path, per-layer sharing, signatures)."""
    from ..mixture import band_means, layer_sharing, plot_mixture_weights, signature_drift

    ws = [{t: torch.tensor(w) for t, w in r["weights"].items()} for r in runs]
    shared = [layer_sharing(w, pair_kind) for w in ws]
    for kind in kinds:
        for band, name in enumerate(("early layers (first half)", "late layers (second half)")):
            rep.add_row(setting=f"template sharing, {kind.replace('_', '-')} pairs, {name}", method=row.label,
                        metric="same-template fraction", paper=None,
                        values=[band_means(s[kind]["same_template"])[band] for s in shared])
    drift = [signature_drift({t: torch.tensor(w) for t, w in r["weights_init"].items()}, w) for r, w in zip(runs, ws)]
    rep.add_row(setting="layer choices (argmax template) changed from init", method=row.label, metric="fraction",
                values=[d["changed"] for d in drift], paper=None)
    rep.add_row(setting="mean largest mixture weight (init -> end)", method=row.label, metric="weight",
                values=[d["confidence_after"] for d in drift], paper=None,
                init=round(mean(d["confidence_before"] for d in drift), 4))
    png = plot_mixture_weights(ws[0], Path(out_dir) / f"mixture_weights_{slug(row.label)}.png",
                               title=f"{row.label}: {what} (colour = template), seed 0")
    return {"heatmap": str(png), "sharing_seed0": shared[0],
            "signatures_seed0": {t: w.argmax(-1).tolist() for t, w in ws[0].items()}}
