"""The layers hold at run time (docs/design.md, "Layers"): the operator and the render service
load none of torch, transformers, cairosvg or scikit-learn, rewards load neither torch nor a
model, and each image's entry point loads only what that image's extras install.

`make lint` checks the import graph (pyproject.toml [tool.importlinter]); these tests import
the modules in a fresh interpreter, so they also see what a package's `__init__` loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

# Prints every module a fresh interpreter loads to import its arguments (`pkg.*`: all of pkg),
# less namespace packages (`google` of a failed optional `import google.auth`).
PROBE = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    package = importlib.import_module(name.removesuffix(".*"))
    if name.endswith(".*"):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")
new = set(sys.modules) - before
namespaces = {m for m in new if getattr(sys.modules[m], "__file__", 1) is None}  # just a dir
print(json.dumps(sorted(new - namespaces)))
"""


@cache
def loaded(*modules: str) -> frozenset[str]:
    """Every module a fresh interpreter loads to import `modules`."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"importing {modules} failed:\n{out.stderr[-3000:]}"
    return frozenset(json.loads(out.stdout))


def tops(modules: frozenset[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


# The modules each image's entry point imports: the operator's kopf module (and the CRD and
# dashboard generators it ships), the render service behind `mmzero serve --render`.
ENTRY_POINTS = {
    "operator": ("mmzero_operator.*",),
    "render": (
        "mmzero_runtime.cli",
        "mmzero_runtime.render.*",
        "mmzero_runtime.serving.render_server",
    ),
}


@pytest.mark.parametrize(
    ("image", "absent"),
    [
        ("operator", {"torch", "transformers", "cairosvg", "sklearn"}),  # none of the runtime's
        ("render", {"torch", "transformers", "sklearn"}),  # cairosvg is what it serves
    ],
)
def test_image_entry_point_loads_no_heavy_package(image: str, absent: set[str]) -> None:
    assert tops(loaded(*ENTRY_POINTS[image])) & absent == set()


def test_rewards_load_neither_torch_nor_a_model() -> None:
    modules = loaded("mmzero_runtime.rewards.*")
    assert tops(modules).isdisjoint({"torch", "transformers"})
    assert not {m for m in modules if m.startswith("mmzero_runtime.models")}


def test_render_loads_no_model() -> None:
    assert not {
        m for m in loaded("mmzero_runtime.render.*") if m.startswith("mmzero_runtime.models")
    }


def image_extras(image: str) -> list[str]:
    """The extras `images/<image>/Dockerfile` installs (besides the base dependencies)."""
    return re.findall(r"--extra (\S+)", (ROOT / "images" / image / "Dockerfile").read_text())


def installed_by(extras: list[str]) -> set[str]:
    """The distributions `uv sync --extra ...` installs for `extras`: the base dependencies, the
    extras' (an extra may name another as `mmzero[...]`) and everything they require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    wanted += [r for extra in extras for r in project["optional-dependencies"][extra]]
    todo = [(Requirement(r), "") for r in wanted]
    done: set[tuple[str, str]] = set()  # (distribution, extra)
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name == "mmzero":
            todo += [
                (Requirement(r), "")
                for e in req.extras
                for r in project["optional-dependencies"][e]
            ]
            continue
        for each in ("", *sorted(req.extras)):
            if (name, each) not in done:
                done.add((name, each))
                todo += [(Requirement(line), each) for line in metadata.requires(name) or []]
    return {name for name, _ in done}


@pytest.mark.parametrize("image", sorted(ENTRY_POINTS))
def test_image_extras_install_every_package_its_entry_point_loads(image: str) -> None:
    owners = metadata.packages_distributions()
    third_party = {
        name
        for name in tops(loaded(*ENTRY_POINTS[image])) - set(sys.stdlib_module_names)
        if not name.startswith("_")  # interpreter and extension internals (__mp_main__, ...)
    } - {"mmzero_runtime", "mmzero_operator", "cython_runtime"}
    needed = {name: owners[name] for name in third_party if name in owners}
    unknown = third_party - needed.keys()
    assert not unknown, f"no installed distribution provides {sorted(unknown)}"
    installed = installed_by(image_extras(image))
    missing = {
        name: dists
        for name, dists in needed.items()
        if not any(canonicalize_name(d) in installed for d in dists)
    }
    assert not missing, (
        f"the {image} image (extras {image_extras(image)}) lacks what its entry point imports: "
        f"{missing}; add it to that extra in pyproject.toml"
    )
