"""The layering of the package (docs/design.md): which rooms may import what, and the public
names that outside code relies on."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import physdiff

PKG = Path(physdiff.__file__).parent
STUDIES = PKG / "studies"


def _imported_modules(path: Path) -> set[str]:
    """Absolute dotted names of the modules (and ``from`` targets) imported by the file at ``path``."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package holding the file (for __init__.py: its own)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_theory_and_numba_rooms_and_the_front_door_import_no_torch():
    theory = [f"physdiff.theory.{m.name}" for m in pkgutil.iter_modules([str(PKG / "theory")])]
    modules = ["physdiff", "physdiff.cli", "physdiff.schedules", "physdiff.forward", "physdiff.spins",
               "physdiff._rng", "physdiff.theory", *theory]
    code = (f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
            "bad = sorted(m for m in ('torch', 'matplotlib') if m in sys.modules)\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout, "a torch-free room imports torch"
    # the notebook front door, the CLI parser and the theory stay light: no plotting either
    assert out.stdout.strip() == ""


def test_no_study_imports_another_study():
    study_modules = {f"physdiff.studies.{m.name}" for m in pkgutil.iter_modules([str(STUDIES)])
                     if not m.name.startswith("_")}
    for mod in sorted(study_modules):
        path = STUDIES / f"{mod.rsplit('.', 1)[1]}.py"
        imported = _imported_modules(path)
        others = {name for name in imported for other in study_modules - {mod}
                  if name == other or name.startswith(other + ".")}
        assert not others, f"{mod} imports the study module(s) {sorted(others)}; move shared code to a room"


def test_nothing_below_studies_imports_them():
    allowed = {PKG / "cli.py", PKG / "__init__.py"}
    for path in sorted(PKG.rglob("*.py")):
        if path in allowed or STUDIES in path.parents:
            continue
        imported = _imported_modules(path)
        bad = {n for n in imported if n == "physdiff.studies" or n.startswith("physdiff.studies.")}
        assert not bad, f"{path.relative_to(PKG.parent)} imports {sorted(bad)}"


def test_the_import_parser_resolves_relative_imports(tmp_path):
    assert "physdiff.theory.gaussian" in _imported_modules(STUDIES / "biroli_fig2.py")
    assert "physdiff.studies.register" in _imported_modules(STUDIES / "biroli_fig2.py")


# module -> names that outside code imports from it; name -> leading parameters where fixed
CONTRACT = {
    "physdiff.schedules": ["make_schedule", "Schedule"],
    "physdiff.forward": ["diffuse", "trajectory"],
    "physdiff.spins": ["sample_curie_weiss"],
    "physdiff.theory.curie_weiss": ["magnetization_distribution", "m_star", "top_eigenvalue", "posterior_mean",
                                    "score", "log_density", "score_asymptotic", "potential", "speciation_time"],
    "physdiff.theory.gaussian": ["score_two_gaussians", "phi_two_clusters", "PHI_SPECIATION", "collapse_time",
                                 "excess_entropy"],
    "physdiff.datasets": ["load_mnist", "swiss_roll", "curie_weiss"],
    "physdiff.ddpm": ["train", "load", "DDPM"],
    "physdiff.reverse": ["eps_from_score", "reverse_chain", "cloning", "CloningResult"],
    "physdiff.sd15": ["bound_K_gaussian", "gaussian_betas", "unit_variance", "null_log_likelihood_gaussian",
                      "swiss_roll_log_density"],
    "physdiff.studies": ["get", "list_studies", "study"],
    "physdiff": ["list_studies", "study", "train", "load", "sample"],
}
SIGNATURES = {
    "physdiff.schedules.make_schedule": ["name", "T"],
    "physdiff.forward.diffuse": ["x0", "schedule", "t", "seed"],
    "physdiff.forward.trajectory": ["x0", "schedule", "steps", "seed"],
    "physdiff.spins.sample_curie_weiss": ["N", "beta", "h", "n_samples", "seed", "method"],
    "physdiff.theory.curie_weiss.magnetization_distribution": ["N", "beta", "h"],
    "physdiff.theory.curie_weiss.potential": ["mu", "alpha_bar", "N", "beta", "h", "kind"],
    "physdiff.theory.curie_weiss.speciation_time": ["N", "beta", "h", "kind"],
    "physdiff.theory.gaussian.score_two_gaussians": ["x_t", "alpha_bar", "m", "sigma", "weight_plus"],
    "physdiff.theory.gaussian.phi_two_clusters": ["t", "m_norm", "gamma", "weight_plus"],
    "physdiff.theory.gaussian.collapse_time": ["P", "d", "sigma2"],
    "physdiff.theory.gaussian.excess_entropy": ["t", "P", "d", "sigma2"],
    "physdiff.datasets.load_mnist": ["data_dir", "split", "digits", "download"],
    "physdiff.datasets.swiss_roll": ["n", "turns"],
    "physdiff.datasets.curie_weiss": ["n", "N", "beta", "h", "seed"],
    "physdiff.reverse.eps_from_score": ["score_fn", "schedule"],
    "physdiff.reverse.reverse_chain": ["eps_fn", "x_T", "schedule", "t_start", "t_stop", "seed", "sigma", "record"],
    "physdiff.reverse.cloning": ["eps_fn", "schedule", "classify", "branch_steps", "n_pairs", "d", "seed"],
    "physdiff.studies.study": ["name", "out"],
}


@pytest.mark.parametrize("module", sorted(CONTRACT))
def test_contract_names_import_from_their_paths(module):
    mod = importlib.import_module(module)
    for name in CONTRACT[module]:
        assert hasattr(mod, name), f"{module}.{name} is part of the public contract"


@pytest.mark.parametrize("qualname", sorted(SIGNATURES))
def test_contract_signatures(qualname):
    module, name = qualname.rsplit(".", 1)
    params = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    expected = SIGNATURES[qualname]
    assert params[:len(expected)] == expected, f"{qualname}{tuple(params)}"


def test_contract_members():
    from physdiff import ddpm, reverse, schedules

    sched = schedules.make_schedule("linear", 10)
    for attr in ("T", "betas", "alphas", "alpha_bar", "physical_time"):
        assert hasattr(sched, attr)
    assert schedules.Schedule.from_betas(sched.betas[1:]) == sched
    for attr in ("save", "sample", "eps", "score", "reconstruct", "inpaint"):
        assert callable(getattr(ddpm.DDPM, attr))
    assert callable(reverse.CloningResult.speciation_time) and "phi" in reverse.CloningResult.__dataclass_fields__
    assert isinstance(physdiff.studies.get("two-cluster-cloning").Params, type)
