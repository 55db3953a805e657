"""The study registry: every registered study runs on its TINY Params through the notebook API and
the command line with the same numbers, and its Datasets describe themselves."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest
import xarray as xr

import physdiff
from physdiff import results, studies
from physdiff.cli import main
from physdiff.studies import _runner, register

NAMES = studies.list_studies()


def _cli_args(study, values: dict) -> list[str]:
    """Command-line flags for Params values (the inverse of the runner's parser)."""
    args = []
    for name, value in values.items():
        if isinstance(value, bool):
            args.append(_runner.flag(name) if value else "--no-" + _runner.flag(name)[2:])
        elif isinstance(value, (tuple, list)):
            args += [_runner.flag(name), *map(str, value)]
        else:
            args += [_runner.flag(name), str(value)]
    return args


def _check_described(ds: xr.Dataset, study, params, key: str) -> None:
    where = f"{study.name}: {key}"
    assert ds.attrs["Conventions"] == "CF-1.10", where
    assert ds.attrs["title"] == study.title, where
    assert ds.attrs["source"] == f"physdiff {physdiff.__version__}", where
    assert study.name in ds.attrs["history"], where
    assert json.loads(ds.attrs["params"]) == json.loads(json.dumps(dataclasses.asdict(params))), where
    assert int(ds.attrs["seed"]) == params.seed, where
    for name, var in ds.data_vars.items():
        assert isinstance(var.attrs.get("units"), str) and var.attrs["units"], f"{where}: {name} has no units"
        assert isinstance(var.attrs.get("long_name"), str) and var.attrs["long_name"], \
            f"{where}: {name} has no long_name"
    for f in dataclasses.fields(params):
        if f.metadata.get("coord"):
            assert f.name in ds.variables, f"{where}: coord parameter {f.name} is not a coordinate"
            if ds[f.name].ndim == 0:
                assert ds[f.name].item() == getattr(params, f.name), where
    assert "physical_time" not in ds.variables, f"{where}: name the physical time 'time'"
    assert "t" not in ds.dims, f"{where}: name the step dimension 'step'"


def _tiny(study, request) -> dict:
    """The study's TINY overrides; a ``data_dir`` points at the MNIST files (skip without them)."""
    values = dict(study.TINY)
    if "data_dir" in {f.name for f in dataclasses.fields(study.Params)}:
        values["data_dir"] = str(request.getfixturevalue("mnist_dir"))
    return values


@pytest.mark.parametrize("name", NAMES)
def test_every_study_runs_tiny_with_the_same_numbers_from_api_and_cli(name, tmp_path, request):
    study = studies.get(name)
    tiny = _tiny(study, request)
    params = study.Params(**tiny)
    api = physdiff.study(name, out=tmp_path / "api", **tiny)
    assert api and set(api) == {p.stem for p in (tmp_path / "api").glob("*.nc")}
    assert list((tmp_path / "api").glob("*.png")), f"{name}: plot() drew no figure"
    for key, ds in api.items():
        _check_described(ds, study, params, key)
        xr.testing.assert_equal(results.open_dataset(tmp_path / "api" / f"{key}.nc"), ds)

    out = tmp_path / "cli"
    assert main(["study", name, *_cli_args(study, tiny), "--out", str(out), "--no-progress"]) == 0
    for key, ds in api.items():
        back = results.open_dataset(out / f"{key}.nc")
        xr.testing.assert_equal(back, ds)  # same seed, same numbers
        assert back.attrs["history"].startswith(f"physdiff study {name}")


def test_registry_lists_studies_with_titles(capsys):
    assert NAMES == sorted(NAMES) and "two-cluster-cloning" in NAMES
    assert physdiff.list_studies() == NAMES
    assert main(["study", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, name in zip(lines, NAMES):
        assert studies.get(name).title in line
    with pytest.raises(ValueError, match="two-cluster-cloning"):
        studies.get("no-such-study")


def test_bad_flag_values_exit_2_naming_the_flag_before_any_work(tmp_path, capsys, monkeypatch):
    study = studies.get("two-cluster-cloning")

    def never(*a, **k):
        raise AssertionError("the study ran before its parameters were validated")

    monkeypatch.setattr(importlib.import_module(study.module), "run", never)
    out = tmp_path / "out"
    for argv, flag in ((["--n-pairs", "0"], "--n-pairs"), (["--sigma", "-1"], "--sigma"), (["--threads", "0"], "--threads"),
                       (["--device", "cuda"], "--device")):
        assert main(["study", "two-cluster-cloning", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("physdiff: error: ") and flag in err and len(err.splitlines()) == 1
    assert main(["study", "two-cluster-cloning", "--n-pairs", "many", "--out", str(out)]) == 2  # argparse
    assert "--n-pairs" in capsys.readouterr().err
    assert main(["study", "no-such-study", "--out", str(out)]) == 2
    assert "two-cluster-cloning" in capsys.readouterr().err
    assert main(["study"]) == 2
    assert not out.exists()
    with pytest.raises(ValueError, match="n_pairs must be >= 1"):
        physdiff.study("two-cluster-cloning", n_pairs=0)
    with pytest.raises(ValueError, match="no parameter"):
        physdiff.study("two-cluster-cloning", n_pair=10)


def test_existing_output_is_kept_without_force_and_interrupt_exits_130(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    tiny = _cli_args(studies.get("two-cluster-cloning"), studies.get("two-cluster-cloning").TINY)
    assert main(["study", "two-cluster-cloning", *tiny, "--out", str(out)]) == 2
    assert str(out) in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "previous run"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_runner, "run_study", interrupted)
    assert main(["study", "two-cluster-cloning", "--out", str(tmp_path / "x")]) == 130


def test_register_refuses_malformed_studies():
    with pytest.raises(ValueError, match="kebab-case"):
        register("Bad_Name", title="x")

    @dataclasses.dataclass(frozen=True)
    class NoSeed:
        n: int = dataclasses.field(default=1, metadata={"help": "n"})

    with pytest.raises(TypeError, match="seed"):
        register("no-seed", title="x")(NoSeed)

    @dataclasses.dataclass(frozen=True)
    class NoHelp:
        seed: int = 0

    with pytest.raises(TypeError, match="help"):
        register("no-help", title="x")(NoHelp)

    @dataclasses.dataclass(frozen=True)
    class BadType:
        x: list = dataclasses.field(default_factory=list, metadata={"help": "x"})
        seed: int = dataclasses.field(default=0, metadata={"help": "seed"})

    with pytest.raises(TypeError, match="type"):
        register("bad-type", title="x")(BadType)
    assert not {"no-seed", "no-help", "bad-type"} & set(studies.list_studies())


def test_api_history_is_the_python_call():
    ds = physdiff.study("two-cluster-cloning", **studies.get("two-cluster-cloning").TINY)
    assert all(d.attrs["history"].startswith("physdiff.study('two-cluster-cloning'") for d in ds.values())
