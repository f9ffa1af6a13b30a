"""``tessera data check``: which datasets are under the root, verified, and which splits are usable.

>>> import tempfile
>>> r = check_datasets(tempfile.mkdtemp(), names=["mnist"])
>>> r["datasets"]["mnist"]["present"], r["datasets"]["mnist"]["status"]
(False, 'missing')
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from ..errors import DataError
from ..results import format_table
from .fetch import file_status, source_hint
from .registry import DATASETS, DatasetSpec, get_spec
from .root import resolve_root

__all__ = ["check_datasets", "check_dataset", "format_check_table"]


def check_dataset(spec: DatasetSpec, root, verify: bool = True) -> dict[str, Any]:
    """Report for one dataset: present, verified, status, per-file detail, usable splits and a note."""
    rootp = resolve_root(root)
    files = {f.relpath: file_status(rootp, f, verify, source_hint(spec, f)) for f in spec.files}
    good = {rel: st["present"] and st["verified"] is not False for rel, st in files.items()}
    usable: dict[str, list[str]] = {}
    for split in spec.splits:
        srcs = [s for s in spec.sources_for(split) if all(good[f.relpath] for f in spec.files_for(split, s))]
        if srcs:
            usable[split] = srcs
    present = any(st["present"] for rel, st in files.items() if not spec.file(rel).optional) or bool(usable)
    corrupt = [rel for rel, st in files.items() if st["verified"] is False]
    checked = [st["verified"] for st in files.values() if st["present"] and st["verified"] is not None]
    verified: bool | None = None if not verify else (present and not corrupt and bool(checked))
    if not present:
        status = "missing"
    elif corrupt:
        status = "corrupt"
    elif len(usable) == len(spec.splits):
        status = "complete"
    else:
        status = "partial"
    out = {"present": present, "verified": verified, "status": status, "partial": status == "partial",
           "usable_splits": list(usable), "missing_splits": [s for s in spec.splits if s not in usable],
           "files": files, "note": _note(spec, rootp, files, usable, corrupt, status)}
    if len(spec.sources) > 1:
        out["sources"] = usable
    return out


def _note(spec: DatasetSpec, rootp, files: dict, usable: dict, corrupt: list[str], status: str) -> str:
    if status == "missing":
        folder = rootp / spec.files[0].relpath.split("/")[0]
        return f"nothing under {folder}/; get it from {spec.homepage} or pass download=True"
    name = lambda rel: rel.rsplit("/", 1)[-1]  # noqa: E731
    parts = []
    if corrupt:
        parts.append("corrupt " + ", ".join(f"{name(r)} (md5 {files[r]['md5']}, expected {files[r]['expected_md5']})"
                                            for r in corrupt))
    absent = [f for f in spec.files if f.splits and not files[f.relpath]["present"]]
    unusable = [s for s in spec.splits if s not in usable]
    # files whose absence costs a split, vs. absent files of an alternative source that is not needed
    costly = [f for f in absent if any(s in unusable for s in f.splits)]
    spare = [f for f in absent if f not in costly]
    if costly:
        parts.append("missing " + ", ".join(name(f.relpath) for f in costly))
    if unusable:
        parts.append(f"{', '.join(unusable)} unusable")
    if len(spec.sources) > 1 and usable:
        parts.append("reads from " + "+".join(sorted({s for v in usable.values() for s in v})))
    if spare and len(spec.sources) > 1:
        parts.append("alternative source files absent: " + ", ".join(name(f.relpath) for f in spare))
    opt = [name(r) for r, st in files.items() if not st["present"] and spec.file(r).optional]
    if opt:
        parts.append(f"optional absent: {', '.join(opt)}")
    return "; ".join(parts)


def check_datasets(root: str | os.PathLike | None = None, names: Iterable[str] | None = None, *,
                   verify: bool = True) -> dict[str, Any]:
    """``{"root": str, "datasets": {name: report}}`` for ``names`` (default: every registered dataset).

    Each report: ``present``, ``verified`` (md5 of every present file matches; None when verify=False),
    ``status`` (complete / partial / missing / corrupt), ``files`` {relpath: {present, verified, md5,
    expected_md5, bytes, ...}}, ``usable_splits``, ``missing_splits`` and a one-line ``note``.
    """
    rootp = resolve_root(root)
    names = list(names) if names is not None else list(DATASETS)
    for n in names:
        get_spec(n)
    if not rootp.is_dir():
        raise DataError(f"data root {rootp} does not exist; pass --root DIR (e.g. ../shared/data) or set TESSERA_DATA")
    return {"root": str(rootp), "datasets": {n: check_dataset(DATASETS[n], rootp, verify) for n in names}}


def _yn(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "no")


def format_check_table(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`check_datasets` result (one row per dataset)."""
    rows = []
    for name, d in result["datasets"].items():
        fs = [st for rel, st in d["files"].items()]
        rows.append({"dataset": name, "status": d["status"], "present": _yn(d["present"]),
                     "verified": _yn(d["verified"]), "files": f"{sum(st['present'] for st in fs)}/{len(fs)}",
                     "usable_splits": ",".join(d["usable_splits"]) or "-", "note": d["note"] or "-"})
    table = format_table(rows, ["dataset", "status", "present", "verified", "files", "usable_splits", "note"])
    return f"data root: {result['root']}\n{table}"
