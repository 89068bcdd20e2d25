"""The images, the chart and the spec agree: the tags `make images` builds are the ones the
chart and `spec.cluster.image` pull, and every image installs from the lock CI tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from mmzero_runtime.spec import ClusterSpec

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_default_image_tags_match_what_make_images_builds() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "mmzero" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "mmzero" / "values.yaml").read_text())
    assert chart["appVersion"] == VERSION  # the chart's empty tags mean appVersion
    assert values["operator"]["image"] == {"repository": "mmzero/operator", "tag": "",
                                           "pullPolicy": "IfNotPresent"}  # fmt: skip
    assert values["render"]["image"]["repository"] == "mmzero/render"
    assert ClusterSpec().image == f"mmzero/runtime:{VERSION}"
    makefile = (ROOT / "Makefile").read_text()
    assert "for image in runtime render operator" in makefile and "REGISTRY ?= mmzero" in makefile


def test_every_image_installs_from_the_lock_and_only_the_runtime_has_torch() -> None:
    for name in ("runtime", "render", "operator"):
        dockerfile = (ROOT / "images" / name / "Dockerfile").read_text()
        assert "uv sync --frozen" in dockerfile, name
        syncs = dockerfile.count("uv sync")
        assert dockerfile.count("UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT") == syncs, (
            f"{name}: an environment without bytecode compiles its imports at every start"
        )
        assert ("--extra train" in dockerfile) == (name == "runtime"), name
        assert "USER " in dockerfile, f"{name} runs as root"
