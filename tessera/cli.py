"""The ``tessera`` command line. Every subcommand is a thin layer over a library function.

    tessera --version
    tessera demo [--out DIR]
    tessera data check [--root DIR] [--json FILE]
    tessera train CONFIG --out DIR [--steps N] [--resume] [--set key=value ...]
    tessera eval RUN_DIR [--json FILE]
    tessera reproduce NAME [--json FILE] [--seeds N] [--budget quick|default] [--out DIR]
    tessera bench NAME [--json FILE] [--budget quick|default]
    tessera list

Every failure prints one line, ``tessera: error: <what>; <what to do>``, and exits with status 2
(``TESSERA_TRACEBACK=1`` shows the traceback of an unexpected one). A run stopped by SIGINT / SIGTERM
prints what was saved and the command that continues it, and exits with 128 + the signal number.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from . import __version__
from .errors import ConfigError, TesseraError, TesseraWarning

__all__ = ["main", "build_parser"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format (usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"tessera: error: {message}; see `{self.prog} --help`")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _output_file(path: str | None, flag: str = "--json") -> Path | None:
    """Check, before any work, that ``path`` can be written as a file."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p} is a folder; pass a file name such as {p / 'result.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    for anc in (parent, *parent.parents):
        if anc.exists():
            if not anc.is_dir():
                raise ConfigError(f"{flag} {p}: {anc} is a file, not a folder; choose another path")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {p}: cannot write in {anc} (permission denied); choose another path")
            break
    return p


def _output_dir(path: str | Path, flag: str = "--out") -> Path:
    p = Path(path)
    for anc in (p, *p.parents):
        if anc.exists():
            if not anc.is_dir():
                raise ConfigError(f"{flag} {p}: {anc} is a file, not a folder; choose another path")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {p}: cannot write in {anc} (permission denied); choose another path")
            break
    return p


def _data_root(args: argparse.Namespace) -> Path | None:
    root = getattr(args, "data_root", None) or getattr(args, "root", None)
    if root and not Path(root).is_dir():
        raise ConfigError(f"data root {root} is not a folder; pass --data-root DIR (e.g. ../shared/data) or set "
                          "TESSERA_DATA")
    return Path(root) if root else None


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(_output_dir(args.out))
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .data import check_datasets, format_check_table
    from .io import save_json
    _output_file(args.json)
    result = check_datasets(_data_root(args))
    print(format_check_table(result))
    if args.json:
        save_json(args.json, result)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train_main
    _output_dir(args.out)
    train_main(args.config, args.out, steps=args.steps, resume=args.resume, overrides=args.set)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .train import eval_main
    _output_file(args.json)
    eval_main(args.run_dir, json_path=args.json, device=args.device)
    return 0


def _run_registered(kind: str, args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS, RunOptions
    from .bench import BENCHMARKS
    from .results import format_table
    from .train.dist import select_device
    reg = EXPERIMENTS if kind == "reproduce" else BENCHMARKS
    fn: Callable = reg.get(args.name)
    out = _output_dir(args.out if args.out else Path("runs") / kind / args.name)
    select_device(args.device)   # an unknown or absent device fails now, not after minutes of work
    opts = RunOptions(json=_output_file(args.json), out=out, seeds=args.seeds,
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
    p = _Parser(prog="tessera", description="Neural networks built from reusable components.")
    p.add_argument("--version", action="version", version=f"tessera {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="offline showcase on scikit-learn's digits; prints a results table")
    d.add_argument("--out", default="runs/demo", help="folder for the demo's plots and JSON (default runs/demo)")
    d.set_defaults(func=_cmd_demo)

    data = sub.add_parser("data", help="dataset utilities")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    c = dsub.add_parser("check", help="which datasets are present under the data root, md5-verified")
    c.add_argument("--root", "--data-root", dest="root", default=None,
                   help="data root (default: $TESSERA_DATA or the user cache dir)")
    c.add_argument("--json", default=None, help="also write the result as JSON here")
    c.set_defaults(func=_cmd_data_check)

    t = sub.add_parser("train", help="train from a YAML config")
    t.add_argument("config", help="YAML config, e.g. configs/mnist-isometric.yaml")
    t.add_argument("--out", required=True, help="run directory (metrics.jsonl, final.json, ckpt/)")
    t.add_argument("--steps", type=_count(0), default=None,
                   help="stop at this global step, at most the schedule's length (train.steps / epochs), which "
                        "--steps never changes; to train longer, lengthen the schedule: --set train.steps=N")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/ckpt exactly (checksums verified; OUT/ckpt.prev if ckpt is damaged)")
    t.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override a config key, e.g. --set train.optim.lr=0.01")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a finished or interrupted run directory")
    e.add_argument("run_dir")
    e.add_argument("--json", default=None, help="write the metrics here")
    e.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: the run's train.device)")
    e.set_defaults(func=_cmd_eval)

    for kind, helptext in (("reproduce", "run a paper experiment on real data"),
                           ("bench", "time tessera against plain PyTorch, side by side")):
        r = sub.add_parser(kind, help=helptext)
        r.add_argument("name", help="see `tessera list`")
        r.add_argument("--json", default=None, help="write the result JSON here")
        r.add_argument("--out", default=None, help=f"folder for plots and per-run artifacts (default runs/{kind}/NAME)")
        r.add_argument("--seeds", type=_count(1), default=None, help="number of seeds, >= 1 (default: the experiment's)")
        r.add_argument("--budget", choices=("quick", "default", "paper"), default="default",
                       help="quick: smoke-sized; default: the README's budget; paper: the paper's (where feasible)")
        r.add_argument("--data-root", default=None, help="data root (default: $TESSERA_DATA or the user cache dir)")
        r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
        r.add_argument("--fresh", action="store_true", help="ignore per-seed results saved by an interrupted run")
        r.set_defaults(func=lambda a, k=kind: _run_registered(k, a))

    ls = sub.add_parser("list", help="list experiments, benchmarks and models")
    ls.set_defaults(func=_cmd_list)
    return p


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    if issubclass(category, TesseraWarning):
        print(f"tessera: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _interrupted_text(args: argparse.Namespace, t0: float) -> str:
    """What a Ctrl-C outside training left behind, measured, not promised."""
    if args.command in ("reproduce", "bench"):
        out = Path(args.out) if args.out else Path("runs") / args.command / args.name
        saved = [p for p in out.rglob("*.json") if p.stat().st_mtime >= t0] if out.is_dir() else []
        if args.command == "reproduce" and saved:
            return (f"interrupted; {len(saved)} finished result file(s) are saved under {out} and are reused when "
                    f"you rerun the same command (add --fresh to start over)")
    return "interrupted; this command saved nothing, rerunning it starts over"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:500]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        if args.command == "data":
            parser.parse_args(["data", "--help"])
        parser.print_help()
        return 0
    t0 = time.time()
    debug = os.environ.get("TESSERA_TRACEBACK", "") not in ("", "0")
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except TesseraError as e:
        from .train.signals import Interrupted
        if isinstance(e, Interrupted):
            print(f"tessera: {_one_line(e)}", file=sys.stderr)
            return 128 + int(e.signum)
        print(f"tessera: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tessera: {_interrupted_text(args, t0)}", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as e:
        if debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"tessera: error: {e.strerror or _one_line(e)}{where}; check the path, its permissions and the free "
              "disk space", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(f"tessera: error: unexpected {type(e).__name__}: {_one_line(e)}; rerun with TESSERA_TRACEBACK=1 for "
              "the traceback and report it", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = _default_showwarning


if __name__ == "__main__":
    raise SystemExit(main())
