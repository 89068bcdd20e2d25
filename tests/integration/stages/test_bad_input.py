"""Bad input to `mmzero run`: a clear error naming the cause, and finished stages kept.

A model that is not a VLM and sizes that cannot fit are refused before anything is written; a
corrupt stored checkpoint stops the stage that needs it, naming the file; a full disk stops the
trainer at its checkpoint with a message saying so, and what was finished before survives.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from transformers import Qwen2Config, Qwen2ForCausalLM

from mmzero_runtime.storage.manifest import read_manifest, verify
from mmzero_runtime.storage.store import LocalStore

if TYPE_CHECKING:
    from conftest import Cli, QuickRunFile

pytestmark = [pytest.mark.integration]

UNTIL_PROPOSER = ("--until", "proposer-grpo", "--device", "cpu", "--run-dir")


def _edit(run_file: Path, **spec: object) -> Path:
    document = yaml.safe_load(run_file.read_text())
    document["spec"].update(spec)
    run_file.write_text(yaml.safe_dump(document))
    return run_file


def _assert_clear(output: str, *phrases: str) -> None:
    """One `error:` line for the user, no traceback."""
    assert "Traceback" not in output, output[-3000:]
    for phrase in phrases:
        assert phrase in output, output[-3000:]


def test_text_only_model_is_refused_before_the_run_starts(
    tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    text_only = tmp_path / "qwen2"
    config = Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(text_only)
    run_file = quick_run_file(tmp_path, text_only)
    code, output = cli.run("run", str(run_file), *UNTIL_PROPOSER, str(tmp_path / "run"))
    assert code == 1
    _assert_clear(output, f"model {text_only}", "text-only")
    assert not (tmp_path / "run").exists()  # nothing pinned: fixing the spec and rerunning works


def test_sizes_that_cannot_fit_are_refused_naming_the_field(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    run_file = _edit(quick_run_file(tmp_path, tiny_vlm_dir), image={"max_pixels": 4_194_304})
    code, output = cli.run("run", str(run_file), *UNTIL_PROPOSER, str(tmp_path / "run"))
    assert code == 1
    _assert_clear(output, "image.max_pixels: 4194304 pixels", "roles.solver.max_prompt_tokens")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_corrupt_checkpoint_stops_the_next_stage_naming_the_file(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    run_file = quick_run_file(tmp_path, tiny_vlm_dir, proposer_steps=1)
    run_dir = tmp_path / "run"
    code, output = cli.run("run", str(run_file), *UNTIL_PROPOSER, str(run_dir))
    assert code == 0, output[-3000:]
    weights = run_dir / "i1" / "proposer-grpo" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))

    code, output = cli.run(
        "run", str(run_file), "--until", "propose", "--device", "cpu", "--run-dir", str(run_dir)
    )
    assert code == 1
    _assert_clear(output, "i1/proposer-grpo/model/model.safetensors: sha256", "Delete its manifest")
    verify(LocalStore(run_dir), "base")  # the base model is untouched
    assert read_manifest(LocalStore(run_dir), "i1/propose") is None


def _unshare() -> str:
    found = shutil.which("unshare")
    if found is None:
        pytest.skip("util-linux unshare is not installed")
    return found


@pytest.mark.slow
def test_full_disk_stops_the_trainer_with_a_clear_error_and_keeps_the_base(
    tiny_vlm_dir: Path, tmp_path: Path, quick_run_file: QuickRunFile, cli: Cli
) -> None:
    """A 16 MiB filesystem holds the base model (about 8 MiB) but not the first checkpoint."""
    run_file = quick_run_file(tmp_path, tiny_vlm_dir, proposer_steps=1)
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    # A private mount namespace: the small tmpfs exists for this command only; its contents
    # are copied out for the assertions before the namespace goes away.
    script = (
        f'mount -t tmpfs -o size=16m tmpfs "{disk}" || exit 99; "$@"; code=$?; '
        f'cp -a "{disk}/." "{kept}/"; exit $code'
    )
    code, output = cli.run(
        "run", str(run_file), *UNTIL_PROPOSER, str(disk / "run"),
        prefix=(_unshare(), "--map-root-user", "--mount", "sh", "-c", script, "sh"),
    )  # fmt: skip
    if code == 99:
        pytest.skip(f"this kernel refuses a private tmpfs mount: {output[-500:]}")
    assert code == 1
    _assert_clear(output, "disk full while writing", "rerun the same command")
    verify(LocalStore(kept / "run"), "base")
    assert read_manifest(LocalStore(kept / "run"), "i1/proposer-grpo") is None
