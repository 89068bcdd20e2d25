"""The launch contract's own parts: the run directory's layout, log names, the stage-kind table."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from mmzero_runtime.spec import RunSpec
from mmzero_runtime.stages.execution.runner import KINDS
from mmzero_runtime.stages.graph import launch
from mmzero_runtime.stages.graph.plan import STAGE_KINDS

TOP = PurePosixPath("/work")
CACHE = PurePosixPath("/cache")


@pytest.mark.parametrize(
    ("uri", "on_machine", "in_volume"),
    [
        # a directory store: under the working directory, or inside the claim
        ("runs", "/work/runs/demo", "/var/lib/mmzero/runs/demo"),
        # an absolute path stays itself on a machine, and stays inside the claim in a pod
        ("/data/runs", "/data/runs/demo", "/var/lib/mmzero/data/runs/demo"),
        # S3: a download mirror named after bucket and prefix
        (
            "s3://bucket/runs",
            "/cache/mirror/bucket/runs/demo",
            "/var/lib/mmzero/mirror/bucket/runs/demo",
        ),
    ],
)
def test_run_dir_is_the_store_or_its_mirror_on_a_machine_and_in_a_pod(
    uri: str, on_machine: str, in_volume: str
) -> None:
    spec = RunSpec.model_validate({"storage": {"uri": uri}})
    assert launch.run_dir(spec, "demo", TOP, CACHE) == PurePosixPath(on_machine)
    assert launch.volume_run_dir(spec, "demo", launch.STORE_MOUNT) == PurePosixPath(in_volume)


def test_log_names_one_file_per_process() -> None:
    assert launch.log_name("i1-propose") == "logs/i1-propose.log"
    assert launch.log_name("i1-coder-grpo", rank=3) == "logs/i1-coder-grpo.rank3.log"
    assert launch.log_name("i1-propose", shard=2) == "logs/i1-propose.shard002.log"


def test_every_stage_kind_has_its_module() -> None:
    assert list(KINDS) == list(STAGE_KINDS)
