"""experiments.units.Units: stored results, and workdirs reused only by the same configuration."""
from tessera.experiments import RunOptions
from tessera.experiments.units import Units


def _units(tmp_path, config, resume=True):
    return Units(RunOptions(out=tmp_path, resume=resume), "demo", config, log=lambda m: None)


def _killed(work):
    (work / "train").mkdir()
    (work / "train" / "ckpt").write_text("step 5")
    raise RuntimeError("killed")


def test_workdir_kept_for_same_config_and_cleared_for_another(tmp_path):
    seen = {}

    def look(work):
        seen["ckpt"] = (work / "train" / "ckpt").is_file()
        return {"ok": 1}

    u = _units(tmp_path, {"steps": 10})
    try:
        u.run(("seed0",), _killed)
    except RuntimeError:
        pass
    _units(tmp_path, {"steps": 10}).run(("seed0",), look)          # same configuration: resumes the checkpoint
    assert seen["ckpt"] is True
    try:
        u.run(("seed1",), _killed)
    except RuntimeError:
        pass
    _units(tmp_path, {"steps": 20}).run(("seed1",), look)          # another configuration: starts over
    assert seen["ckpt"] is False
    try:
        u.run(("seed2",), _killed)
    except RuntimeError:
        pass
    _units(tmp_path, {"steps": 10}, resume=False).run(("seed2",), look)   # --fresh: starts over
    assert seen["ckpt"] is False
