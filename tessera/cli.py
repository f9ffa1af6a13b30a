"""The ``tessera`` command line. Every subcommand is a thin layer over a library function.

    tessera --version
    tessera demo [--out DIR]
    tessera data check [--root DIR] [--json FILE]
    tessera train CONFIG --out DIR [--steps N] [--resume] [--set key=value ...]
    tessera eval RUN_DIR [--json FILE]
    tessera reproduce NAME [--json FILE] [--seeds N] [--budget quick|default] [--out DIR]
    tessera bench NAME [--json FILE] [--budget quick|default]
    tessera list

Errors in user input print one line (``tessera: error: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import TesseraError

__all__ = ["main", "build_parser"]


def _data_root(args: argparse.Namespace) -> Path | None:
    root = getattr(args, "data_root", None) or getattr(args, "root", None)
    return Path(root) if root else None


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(Path(args.out))
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .data import check_datasets, format_check_table
    from .io import save_json
    result = check_datasets(_data_root(args))
    print(format_check_table(result))
    if args.json:
        save_json(args.json, result)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train_main
    train_main(args.config, args.out, steps=args.steps, resume=args.resume, overrides=args.set)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .train import eval_main
    eval_main(args.run_dir, json_path=args.json)
    return 0


def _run_registered(kind: str, args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS, RunOptions
    from .bench import BENCHMARKS
    from .results import format_table
    reg = EXPERIMENTS if kind == "reproduce" else BENCHMARKS
    fn: Callable = reg.get(args.name)
    out = Path(args.out) if args.out else Path("runs") / kind / args.name
    opts = RunOptions(json=Path(args.json) if args.json else None, out=out, seeds=args.seeds,
                      data_root=_data_root(args), budget=args.budget, device=args.device,
                      resume=not args.fresh)
    result = fn(opts)
    if isinstance(result, dict) and result.get("rows"):
        print(format_table(result["rows"]))
        print(f"\n{args.name}: {result.get('wall_seconds', 0):.1f} s" + (f"; JSON in {args.json}" if args.json else ""))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS
    from .bench import BENCHMARKS
    for title, reg in (("experiments (tessera reproduce NAME)", EXPERIMENTS), ("benchmarks (tessera bench NAME)", BENCHMARKS)):
        print(title)
        for n in reg.names():
            print(f"  {n:28s} {reg.help(n)}")
    try:
        from .nn import MODELS
        print("models (tessera.nn.create_model)")
        for n in MODELS.names():
            print(f"  {n}")
    except ImportError:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera", description="Neural networks built from reusable components.")
    p.add_argument("--version", action="version", version=f"tessera {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="offline showcase on scikit-learn's digits; prints a results table")
    d.add_argument("--out", default="runs/demo", help="folder for the demo's plots and JSON (default runs/demo)")
    d.set_defaults(func=_cmd_demo)

    data = sub.add_parser("data", help="dataset utilities")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    c = dsub.add_parser("check", help="which datasets are present under the data root, md5-verified")
    c.add_argument("--root", "--data-root", dest="root", default=None,
                   help="data root (default: $TESSERA_DATA or the user cache dir)")
    c.add_argument("--json", default=None, help="also write the result as JSON here")
    c.set_defaults(func=_cmd_data_check)

    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/mnist-isometric.yaml")
    t.add_argument("--out", required=True, help="run directory (metrics.jsonl, final.json, ckpt/)")
    t.add_argument("--steps", type=int, default=None, help="stop at this global step (the LR schedule keeps the config's length)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/ckpt exactly")
    t.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set train.optim.lr=0.01")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a finished or interrupted run directory")
    e.add_argument("run_dir")
    e.add_argument("--json", default=None, help="write the metrics here")
    e.set_defaults(func=_cmd_eval)

    for kind, helptext in (("reproduce", "run a paper experiment on real data"),
                           ("bench", "time tessera against plain PyTorch, side by side")):
        r = sub.add_parser(kind, help=helptext)
        r.add_argument("name", help="see `tessera list`")
        r.add_argument("--json", default=None, help="write the result JSON here")
        r.add_argument("--out", default=None, help=f"folder for plots and per-run artifacts (default runs/{kind}/NAME)")
        r.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the experiment's)")
        r.add_argument("--budget", choices=("quick", "default", "paper"), default="default",
                       help="quick: smoke-sized; default: the README's budget; paper: the paper's (where feasible)")
        r.add_argument("--data-root", default=None, help="data root (default: $TESSERA_DATA or the user cache dir)")
        r.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
        r.add_argument("--fresh", action="store_true", help="ignore per-seed results saved by an interrupted run")
        r.set_defaults(func=lambda a, k=kind: _run_registered(k, a))

    ls = sub.add_parser("list", help="list experiments, benchmarks and models")
    ls.set_defaults(func=_cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command == "data":
            parser.parse_args(["data", "--help"])
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except TesseraError as e:
        print(f"tessera: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tessera: interrupted; finished work is saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
