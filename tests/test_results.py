"""The result JSON: every "±" in the README is ``mean_stderr``'s standard error, checked against the
standard library's ``statistics`` and by hand; rows, bench ratios and the printed table by hand."""
import json
import math
import statistics

import pytest

from tessera.results import Report, format_table, mean_stderr


@pytest.mark.parametrize("vals", [[0.9, 0.92, 0.97, 0.85], [1.0, 2.0], [3.5, -1.0, 2.25, 8.0, 0.0, 1e-3]])
def test_mean_stderr_is_the_standard_error_of_the_mean_not_the_standard_deviation(vals):
    m, se = mean_stderr(vals)
    assert m == pytest.approx(statistics.fmean(vals), rel=1e-12)
    assert se == pytest.approx(statistics.stdev(vals) / math.sqrt(len(vals)), rel=1e-12)


def test_mean_stderr_by_hand_and_edge_cases():
    # 1..5: mean 3, sample variance 10/4 = 2.5, standard error sqrt(2.5 / 5) = sqrt(0.5)
    assert mean_stderr([1, 2, 3, 4, 5]) == pytest.approx((3.0, math.sqrt(0.5)), rel=1e-12)
    assert mean_stderr([7]) == (7.0, 0.0)                          # one seed: no spread
    m, se = mean_stderr([])
    assert math.isnan(m) and math.isnan(se)
    assert mean_stderr(iter([2, 4])) == pytest.approx((3.0, 1.0))  # any iterable; sd sqrt(2), se sqrt(2)/sqrt(2)


def test_report_wall_seconds_rounded_to_milliseconds(monkeypatch):
    import tessera.results as results
    r = Report("t", started=100.0)
    monkeypatch.setattr(results.time, "perf_counter", lambda: 101.23456)
    assert r.to_dict()["wall_seconds"] == 1.235


def test_report_rows_and_json(tmp_path):
    r = Report("demo", config={"steps": 3}, device="cpu")
    row = r.add_row(setting="s", method="m", metric="acc", values=[1.0, 3.0], paper=2.5, extra_note="x")
    assert row == {"setting": "s", "method": "m", "metric": "acc", "lower_is_better": False, "mean": 2.0,
                   "stderr": 1.0, "n": 2, "paper": 2.5, "extra_note": "x", "values": [1.0, 3.0]}
    pre = r.add_row(setting="s", method="p", metric="err", mean=0.5, stderr=0.1, n=4, lower_is_better=True)
    assert (pre["mean"], pre["stderr"], pre["n"], pre["lower_is_better"], "values" in pre) == (0.5, 0.1, 4, True, False)
    b = r.add_bench_row(setting="s", method="b", metric="time", baseline_s=2.0, candidate_s=3.0, note=1)
    assert b == {"setting": "s", "method": "b", "metric": "time", "baseline_s": 2.0, "candidate_s": 3.0,
                 "ratio": 1.5, "note": 1}
    assert r.rows == [row, pre, b]
    d = r.write(tmp_path / "r.json")
    from tessera import __version__
    assert json.loads((tmp_path / "r.json").read_text()) == d
    assert (d["name"], d["version"], d["device"], d["config"], d["rows"]) == ("demo", __version__, "cpu", {"steps": 3},
                                                                              r.rows)
    assert d["wall_seconds"] >= 0
    again = r.write(None)                                                            # no path: nothing written
    assert {k: v for k, v in again.items() if k != "wall_seconds"} == {k: v for k, v in d.items() if k != "wall_seconds"}


def test_format_table_by_hand():
    rows = [{"method": "a", "mean": 0.123456, "n": 3, "values": [1], "lower_is_better": False},
            {"method": "bb", "mean": 123456.0, "n": None, "extra": float("nan")}]
    assert format_table(rows).split("\n") == [
        "method  mean       n  extra",
        "------  ---------  -  -----",
        "a       0.1235     3  -    ",
        "bb      1.235e+05  -  nan  "]
    assert format_table(rows, columns=["n"]).split("\n") == ["n", "-", "3", "-"]
    assert format_table([]) == "(no rows)"
    assert format_table([{"x": 9999.5}]).split("\n")[2] == "1e+04"      # < 1e4 keeps 4 significant digits
    assert format_table([{"x": 10000.0}]).split("\n")[2] == "1.000e+04"  # >= 1e4: scientific, 3 decimals
    assert format_table([{"x": -12346.0}]).split("\n")[2] == "-1.235e+04"
