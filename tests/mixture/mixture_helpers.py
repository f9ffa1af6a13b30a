"""Helpers of the mixture experiment tests (imported by name: the tests folder is not a package)."""


class Killed(Exception):
    """A simulated kill of the process in the middle of an experiment."""


def rows_without_timing(d):
    """The result rows minus wall-clock fields (the only thing a resumed run may change)."""
    return [{k: v for k, v in r.items() if k not in ("train_seconds",)} for r in d["rows"]]
