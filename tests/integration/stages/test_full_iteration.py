"""`make run`'s spec end to end: one full iteration of all seven stages on the warm tiny model,
then the report, opened in a real headless Chromium.

The run is the one a new user starts (`examples/run.yaml`, builtin:tiny), so what these tests
check is what the README promises: every stage finishes and verifies, all three roles train
on data their filters kept, the run manifest is enough to rerun, and the report renders.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmzero_runtime.spec import load_run
from mmzero_runtime.stages.graph.plan import STAGE_KINDS, all_stages
from mmzero_runtime.stages.graph.tables import read_table
from mmzero_runtime.stages.process import measurements
from mmzero_runtime.storage.manifest import read_manifest, verify
from mmzero_runtime.storage.store import LocalStore
from mmzero_runtime.warmstart.build import init_tiny

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "run.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _mmzero(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "mmzero_runtime.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)


@dataclass
class Scraped:
    """The Prometheus that scraped every stage process of the run, and when the run ran."""

    prometheus: Any
    start: float
    end: float
    pushgateway: str


@pytest.fixture(scope="module")
def scraped_run(
    tmp_path_factory: pytest.TempPathFactory, start_prometheus: Any, pushgateway: str
) -> tuple[Path, Scraped]:
    """The example run, each stage process serving /metrics on one port that a real Prometheus
    scrapes every second (the run label set by the scrape config, as relabelling does), and
    pushing its final figures to a real Pushgateway."""
    init_tiny()  # cached after the first build (about 13 minutes on 2 cores)
    directory = tmp_path_factory.mktemp("full") / "tiny"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prometheus = start_prometheus(
        tmp_path_factory.mktemp("prometheus"), {"stages": (f"127.0.0.1:{port}", {"run": "tiny"})}
    )
    start = time.time()
    done = _mmzero("run", str(EXAMPLE), "--device", "cpu", "--run-dir", str(directory),
                   env={"MMZERO_METRICS_PORT": str(port),
                        "MMZERO_METRICS_LINGER_SECONDS": "3",
                        "MMZERO_PUSHGATEWAY_URL": pushgateway})  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    time.sleep(3)  # one more scrape of nothing: the series end
    return directory, Scraped(prometheus, start, time.time(), pushgateway)


@pytest.fixture(scope="module")
def run_dir(scraped_run: tuple[Path, Scraped]) -> Path:
    return scraped_run[0]


def _steps(store: LocalStore, stage: str) -> list[dict[str, Any]]:
    return [r for r in read_table(store, f"i1/{stage}/steps.jsonl") if "skipped" not in r]


def test_every_stage_finished_and_verifies(run_dir: Path) -> None:
    run = load_run(run_dir / "run.yaml")
    store = LocalStore(run_dir)
    for stage in all_stages(run.spec):
        assert read_manifest(store, stage.output) is not None, stage.name
        verify(store, stage.output)
    assert not (run_dir / ".work").exists() or not any((run_dir / ".work").iterdir())


@pytest.mark.parametrize("role", ["proposer", "coder", "solver"])
def test_each_role_trains_every_step_with_rewards_that_vary(run_dir: Path, role: str) -> None:
    spec = load_run(run_dir / "run.yaml").spec
    steps = _steps(LocalStore(run_dir), f"{role}-grpo")
    assert [s["step"] for s in steps] == list(range(1, getattr(spec.roles, role).steps + 1))
    assert any(s["reward/std"] > 0 for s in steps), steps
    assert all(s["groups/total"] > 0 for s in steps)


def test_filter_yields_are_recorded_with_reasons(run_dir: Path) -> None:
    store = LocalStore(run_dir)
    renders = read_table(store, "i1/coder-data/renders.jsonl")
    kept = read_table(store, "i1/coder-data/coder-train.jsonl")
    assert 0 < len(kept) < len(renders)
    assert {r["dropped"] for r in renders if r["id"] not in {k["id"] for k in kept}} - {None}
    candidates = read_table(store, "i1/solver-data/candidates.jsonl")
    train = read_table(store, "i1/solver-data/solver-train.jsonl")
    assert 0 < len(train) == sum(c["dropped"] is None for c in candidates)


def test_every_stage_stores_health_figures_its_tables_recompute(
    scraped_run: tuple[Path, Scraped],
) -> None:
    """Issue 7: the health figures are what the saved tables say (recomputed here without the
    stage's code), and the stage exported the same numbers to Prometheus."""
    from mmzero_runtime.alarms import HEALTH_FILE
    from mmzero_runtime.rewards.diversity import cluster_sizes

    run_dir, scraped = scraped_run
    run = load_run(run_dir / "run.yaml")
    store = LocalStore(run_dir)
    for stage in all_stages(run.spec):
        manifest = read_manifest(store, stage.output)
        assert manifest is not None and HEALTH_FILE in manifest.files, stage.name

    def figures(kind: str) -> dict[str, float]:
        return json.loads(store.read_bytes(f"i1/{kind}/{HEALTH_FILE}"))["figures"]

    probes = read_table(store, "i1/solver-data/probes.jsonl")
    assert len(probes) == run.spec.health.probe_items  # procedural charts all render
    accuracy = sum(p["label_correct"] for p in probes) / len(probes)
    assert all(p["label_correct"] <= (p["label"] is not None) for p in probes)
    solver_data = figures("solver-data")
    assert solver_data["probes/label_accuracy"] == accuracy
    candidates = read_table(store, "i1/solver-data/candidates.jsonl")
    margins = [c["vote_margin"] for c in candidates]
    assert solver_data["votes/margin_mean"] == pytest.approx(sum(margins) / len(margins))
    draws = read_table(store, "i1/solver-data/draws.jsonl")
    failed = sum(d["render"] != "ok" for d in draws) / len(draws)
    assert solver_data["renders/failure_share"] == pytest.approx(failed)
    for role in ("proposer", "coder", "solver"):
        steps = _steps(store, f"{role}-grpo")
        flat = sum(s["groups/zero_variance"] for s in steps)
        share = flat / sum(s["groups/total"] for s in steps)
        assert figures(f"{role}-grpo")["groups/zero_variance_share"] == pytest.approx(share)
    proposals = [r["proposal"] for name in ("proposals-coder.jsonl", "proposals-solver.jsonl")
                 for r in read_table(store, f"i1/propose/{name}") if r["proposal"]]  # fmt: skip
    sizes = cluster_sizes([p["caption"] for p in proposals[: run.spec.health.diversity_sample]],
                          run.spec.rewards.proposer.diversity_distance_threshold)  # fmt: skip
    distinct = round(sum(1 / k for k in sizes))  # a cluster of k texts: k shares of 1/k
    assert figures("propose")["diversity/caption_distinct_share"] == distinct / len(sizes)

    exported = scraped.prometheus.query_range(
        'max(mmzero_health_probes_label_accuracy{run="tiny"})', scraped.start, scraped.end
    )["result"]
    assert float(exported[0]["values"][-1][1]) == pytest.approx(accuracy)


def test_run_manifest_names_every_checkpoint(run_dir: Path) -> None:
    body = json.loads((run_dir / "run-manifest.json").read_text())
    for role in ("proposer", "coder", "solver"):
        assert body["stages"][f"i1/{role}-grpo"]["checkpoint"].startswith("sha256:")
    assert body["spec_hash"].startswith("sha256:") and body["versions"]["torch"] != "absent"


def test_resident_memory_stays_flat_over_steps(run_dir: Path) -> None:
    """Images travel as file references, so later steps hold no more than the early ones."""
    for role in ("proposer", "coder", "solver"):
        rows = measurements.read_steps(run_dir, f"i1-{role}-grpo")
        resident = [r["memory/rss_bytes"] for r in rows]
        assert len(resident) >= 3, rows
        assert resident[-1] <= resident[1] * 1.15 + 64 * 2**20, (role, resident)
        summary = measurements.read_summary(run_dir, f"i1-{role}-grpo")
        # the kernel's high-water mark lags the live figure by a few pages
        assert summary is not None and summary["peak_rss_bytes"] >= 0.98 * max(resident)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make debian-tools` installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _chromium_args(profile: Path) -> list[str]:
    """Headless, offline, no first-run work: the browser touches nothing but the file."""
    return [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    done = _mmzero("report", str(run_dir))
    assert done.returncode == 0, done.stderr
    return run_dir / "report.html"


def test_report_images_and_charts_render_in_chromium(report: Path, tmp_path: Path) -> None:
    """Every embedded image decodes in a real browser, and the page is not blank."""
    probe = tmp_path / "probe.html"
    script = (
        "<script>addEventListener('load', () => { const all = [...document.images]; "
        "document.body.dataset.decoded = all.filter(i => i.naturalWidth > 0).length + '/' + "
        "all.length; });</script></body>"
    )
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", script))
    args = _chromium_args(tmp_path / "profile")
    dom = subprocess.run(
        [*args, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert 'data-decoded="' in dom, dom[:500]
    decoded, total = dom.split('data-decoded="')[1].split('"')[0].split("/")
    assert int(total) > 0 and decoded == total
    assert dom.count("<svg") >= 6  # step charts of three GRPO stages and resources
    assert "<h3>Health</h3>" in dom and "probes/label_accuracy" in dom

    shot = tmp_path / "report.png"
    subprocess.run(
        [*args, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        grey = image.convert("L")
        ink = sum(count for value, count in enumerate(grey.histogram()) if value < 200)
    assert ink > 0.02 * 1280 * 2400  # text, charts and the gallery's images, not a blank page


def test_every_stage_panel_of_the_dashboard_has_data_from_the_run(
    scraped_run: tuple[Path, Scraped],
) -> None:
    from mmzero_operator.dashboard import PANELS

    run_dir, scraped = scraped_run
    for panel in PANELS:
        expr = panel.query.replace("$__rate_interval", "30s")
        data = scraped.prometheus.query_range(expr, scraped.start, scraped.end)  # parses
        if panel.from_operator:
            continue  # the operator's panels: tests/cluster
        assert data["result"], f"panel {panel.title!r}: no data for {expr}"
    steps = scraped.prometheus.query_range('max(mmzero_grpo_steps_total{run="tiny"})',
                                           scraped.start, scraped.end)["result"]  # fmt: skip
    assert max(float(v) for _, v in steps[0]["values"]) >= 1
    final = (run_dir / "metrics" / "i1-solver-grpo.prom").read_text()
    spec = load_run(run_dir / "run.yaml").spec
    assert f"mmzero_grpo_steps_total {float(spec.roles.solver.steps)}" in final


def test_every_stage_pushed_its_final_figures_to_the_pushgateway(
    scraped_run: tuple[Path, Scraped],
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    run_dir, scraped = scraped_run
    with urllib.request.urlopen(f"{scraped.pushgateway}/metrics", timeout=10) as response:
        families = list(text_string_to_metric_families(response.read().decode()))
    pushed = {
        (s.labels["stage"], s.labels["iteration"], s.labels["run"])
        for family in families if family.name == "push_time_seconds"
        for s in family.samples if s.labels.get("job") == "mmzero_stage"
    }  # fmt: skip
    assert pushed == {(kind, "1", "tiny") for kind in STAGE_KINDS}
    steps = {
        s.labels["stage"]: s.value
        for family in families if family.name == "mmzero_grpo_steps"
        for s in family.samples if s.name == "mmzero_grpo_steps_total"
    }  # fmt: skip
    spec = load_run(run_dir / "run.yaml").spec
    assert steps["solver-grpo"] == spec.roles.solver.steps
    assert steps["propose"] == 0
