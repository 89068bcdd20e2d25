"""The render sandbox end to end: real worker processes, the hostile corpus, limits, white output.

The hostile corpus (tests/data/hostile/, one file per attack) runs as one batch followed by a
valid chart; each file must fail with its reason inside the limits and the pool must keep
serving. `__SENTINEL_DIR__` in a file is replaced by a temporary directory holding a magenta
PNG, a secret text file, an SVG and a FIFO, so the tests can show none of them was read.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from mmzero_runtime.render import Renderer, RenderResult, render_file
from mmzero_runtime.render.errors import Reason
from mmzero_runtime.spec import ImageSpec, RenderSpec

pytestmark = pytest.mark.integration

HOSTILE = Path(__file__).parents[2] / "data" / "hostile"
SPEC = RenderSpec(timeout_seconds=3, workers=2)
IMAGE = ImageSpec()  # 512^2 .. 2048^2 pixels
SECRET = "mmzero-sentinel-7f3a9c"
MAGENTA = (255, 0, 255)
NO_WRITES = "Max file size             0                    0"  # RLIMIT_FSIZE in /proc/<pid>/limits

VALID_CHART = """<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">
  <rect x="80" y="180" width="100" height="250" fill="#1f77b4"/>
  <rect x="260" y="80" width="100" height="350" fill="#ff7f0e"/>
  <rect x="440" y="280" width="100" height="150" fill="#2ca02c"/>
  <line x1="60" y1="430" x2="600" y2="430" stroke="black"/>
  <text x="320" y="470" font-family="sans-serif" font-size="20" text-anchor="middle">Sales</text>
</svg>"""

# The expected outcome of every file in the corpus (a test checks the table covers it).
EXPECTED: dict[str, Reason] = {
    "billion_laughs.svg": "parse_error",  # entity declarations are refused (defusedxml)
    "xxe_external_entity.svg": "parse_error",  # SYSTEM entity to the secret file: refused
    "image_file_etc_passwd.svg": "blocked_resource",  # <image href="file:///etc/passwd">
    "image_file_local_png.svg": "blocked_resource",  # file:// URL of the magenta PNG
    "image_fifo_trap.svg": "blocked_resource",  # opening the FIFO would hang: timeout instead
    "image_http.svg": "blocked_resource",  # no network fetch
    "xlink_href_local_path.svg": "blocked_resource",  # bare local path in xlink:href
    "use_external_document.svg": "blocked_resource",  # <use> of another document's element
    "css_import_file.svg": "blocked_resource",  # @import of a local file
    "data_uri_nested_svg.svg": "blocked_resource",  # a second document inside a data URI
    "data_uri_huge.svg": "too_large",  # 1.2 MB: past max_svg_bytes before any parsing
    "canvas_100000x100000.svg": "ok",  # 10^10 px canvas: scaled into the budget, not failed
    "deep_nesting_100k_g.svg": "too_large",  # 100k nested <g>: RecursionError, caught
    "use_self_reference.svg": "too_large",  # a <use> inside its own target
    "use_mutual_reference.svg": "too_large",  # a -> b -> a
    "use_exponential_fanout.svg": "too_large",  # 10^9 rectangles through 9 levels of 10 <use>
    "group_opacity_slow.svg": "timeout",  # 6000 full-canvas groups: past the 3 s deadline
    "aspect_101_to_1.svg": "too_large",  # 10100 x 100
    "blank_canvas.svg": "empty_image",  # white rectangle on white
    "root_not_svg.svg": "parse_error",  # well-formed XML, but HTML
    "not_svg_text.svg": "parse_error",  # prose, not markup
    "invalid_utf8.svg": "parse_error",  # bytes that are not UTF-8
    "empty.svg": "parse_error",  # zero bytes
}


@pytest.fixture(scope="module")
def sentinel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the corpus points at; any of their content in a result would mean a leak."""
    directory = tmp_path_factory.mktemp("sentinel")
    Image.new("RGB", (16, 16), MAGENTA).save(directory / "sentinel.png")
    (directory / "sentinel.txt").write_text(SECRET)
    (directory / "other.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
        '<rect id="shape" width="200" height="100" fill="#ff00ff"/></svg>'
    )
    os.mkfifo(directory / "trap.fifo")  # open() for reading blocks until a writer comes
    return directory


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    with Renderer(SPEC, IMAGE) as renderer:
        yield renderer


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if not path.is_dir()}


@dataclass(frozen=True)
class HostileRun:
    """The corpus batch's results, with the file listings taken around it."""

    ids: list[str]
    results: list[RenderResult]
    cwd_before: set[str]
    cwd_after: set[str]
    scratch_files: set[Path]

    def __getitem__(self, key: str) -> RenderResult:
        (result,) = [result for result in self.results if result.id == key]
        return result


@pytest.fixture(scope="module")
def hostile(renderer: Renderer, sentinel_dir: Path) -> HostileRun:
    """One batch: the whole corpus, then a valid chart."""
    items: list[tuple[str, str | bytes]] = []
    for path in sorted(HOSTILE.iterdir()):
        data = path.read_bytes().replace(b"__SENTINEL_DIR__", str(sentinel_dir).encode())
        items.append((path.name, data))
    items.append(("valid_chart", VALID_CHART))
    cwd_before = set(os.listdir("."))
    results = renderer.render_many(items)
    return HostileRun(
        ids=[key for key, _ in items],
        results=results,
        cwd_before=cwd_before,
        cwd_after=set(os.listdir(".")),
        scratch_files=files_under(Path(renderer.workdir)),
    )


def test_hostile_corpus_every_file_has_expected_outcome() -> None:
    assert {path.name for path in HOSTILE.iterdir()} == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "reason"), list(EXPECTED.items()), ids=list(EXPECTED))
def test_hostile_svg_in_batch_fails_with_its_reason(
    hostile: HostileRun, name: str, reason: Reason
) -> None:
    result = hostile[name]
    assert (result.id, result.reason) == (name, reason), result.detail
    assert (result.png is None) == (reason != "ok")
    assert result.ok or result.detail.startswith(f"item {name}: ")
    assert result.seconds < SPEC.timeout_seconds + 1.0  # decided inside the limits


@pytest.mark.slow
def test_hostile_batch_valid_svg_after_it_renders(hostile: HostileRun) -> None:
    assert [result.id for result in hostile.results] == hostile.ids  # input order, by id
    result = hostile["valid_chart"]
    assert (result.reason, result.width, result.height) == ("ok", 640, 480)
    assert Image.open(io.BytesIO(result.png or b"")).getpixel((130, 300)) == (0x1F, 0x77, 0xB4)


@pytest.mark.slow
def test_hostile_batch_sentinel_content_appears_nowhere(
    hostile: HostileRun, sentinel_dir: Path
) -> None:
    for result in hostile.results:
        assert SECRET not in result.detail
        if result.png is not None:
            assert SECRET.encode() not in result.png
            colours = Image.open(io.BytesIO(result.png)).getcolors(maxcolors=1 << 24) or []
            assert MAGENTA not in {colour for _, colour in colours}, result.id
    # Nobody holds the FIFO open for reading: a writer's non-blocking open finds no reader.
    with pytest.raises(OSError) as raised:
        os.open(sentinel_dir / "trap.fifo", os.O_WRONLY | os.O_NONBLOCK)
    assert raised.value.errno == errno.ENXIO


@pytest.mark.slow
def test_hostile_batch_writes_no_file(hostile: HostileRun) -> None:
    assert hostile.cwd_after == hostile.cwd_before
    # the scratch directories exist, but the render path wrote nothing in them
    assert hostile.scratch_files == set()


def worker_pids(renderer: Renderer) -> list[int]:
    """Processes whose working directory is inside this renderer's scratch root."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = os.readlink(entry / "cwd")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and cwd.startswith(renderer.workdir):
            pids.append(int(entry.name))
    return pids


def worker_limits_text(renderer: Renderer, deadline_seconds: float = 15.0) -> list[str]:
    """/proc limits of both workers, waiting for a replacement still starting after a kill."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        texts = [Path(f"/proc/{pid}/limits").read_text() for pid in worker_pids(renderer)]
        settled = len(texts) == SPEC.workers and all(NO_WRITES in text for text in texts)
        if settled or time.monotonic() > deadline:
            return texts
        time.sleep(0.1)


@pytest.mark.slow
def test_renderer_workers_run_in_scratch_under_rlimits(
    renderer: Renderer, hostile: HostileRun
) -> None:
    texts = worker_limits_text(renderer)  # the batch above had one worker killed and replaced
    assert len(texts) == SPEC.workers
    for limits in texts:
        assert f"Max address space         {SPEC.memory_bytes}" in limits
        assert NO_WRITES in limits
        assert "Max open files            64" in limits


@pytest.mark.parametrize(
    ("width", "height", "reason", "size"),
    [
        pytest.param(100_000, 50_000, "ok", (2896, 1448), id="oversize-fit-to-max-pixels"),
        pytest.param(
            40, 30, "ok", (592, 444), id="tiny-scaled-up-to-min-pixels"
        ),  # never under the floor
        pytest.param(800, 600, "ok", (800, 600), id="in-budget-native"),
        pytest.param(10_100, 100, "too_large", (0, 0), id="aspect-101-to-1-rejected"),
    ],
)
def test_renderer_canvas_size_scaled_into_budget(
    renderer: Renderer, width: int, height: int, reason: Reason, size: tuple[int, int]
) -> None:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<circle cx="{width / 2}" cy="{height / 2}" r="{min(width, height) / 3}"/></svg>'
    )
    (result,) = renderer.render_many([("canvas", svg)])
    assert (result.reason, (result.width, result.height)) == (reason, size), result.detail
    if result.png is not None:
        image = Image.open(io.BytesIO(result.png))
        assert image.size == size
        assert IMAGE.min_pixels - sum(size) <= size[0] * size[1] <= IMAGE.max_pixels
        assert image.getpixel((size[0] // 2, size[1] // 2)) == (0, 0, 0)  # drawing scaled too


def test_renderer_transparent_svg_renders_rgb_on_white(renderer: Renderer) -> None:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">'
        '<rect x="320" y="0" width="320" height="480" fill="black" fill-opacity="0.5"/>'
        '<text x="20" y="240" font-family="sans-serif" font-size="64" fill="black">Label</text>'
        "</svg>"
    )
    (result,) = renderer.render_many([("transparent", svg)])
    image = Image.open(io.BytesIO(result.png or b""))
    assert (image.format, image.mode) == ("PNG", "RGB")
    assert image.getpixel((5, 5)) == (255, 255, 255)  # unpainted: white, not black (§13.14)
    assert image.getpixel((600, 20)) == (127, 127, 127)  # half-black over white
    text = image.crop((0, 160, 320, 260)).convert("L")
    assert sum(text.histogram()[:64]) > 500  # black text stays visible


@pytest.fixture(scope="module")
def limits_batch() -> Iterator[tuple[list[RenderResult], int]]:
    """A one-worker pool with tight memory and CPU limits and a generous pixel budget."""
    spec = RenderSpec(timeout_seconds=20, cpu_seconds=1, memory_bytes=400 << 20, workers=1)
    image = ImageSpec(max_pixels=100_000_000)
    huge = '<svg xmlns="http://www.w3.org/2000/svg" width="10000" height="10000"><rect/></svg>'
    items = [
        ("huge-surface", huge),  # 10^8 px = 400 MB of ARGB: past RLIMIT_AS
        ("cpu-burner", (HOSTILE / "group_opacity_slow.svg").read_text()),  # RLIMIT_CPU 1 s
        ("valid", VALID_CHART),
    ]
    with Renderer(spec, image) as renderer:
        yield renderer.render_many(items), renderer.workers_replaced


@pytest.mark.slow
def test_renderer_surface_past_memory_limit_fails_memory(
    limits_batch: tuple[list[RenderResult], int],
) -> None:
    result = limits_batch[0][0]
    assert (result.id, result.reason) == ("huge-surface", "memory"), result.detail


@pytest.mark.slow
def test_renderer_cpu_limit_passed_reports_timeout(
    limits_batch: tuple[list[RenderResult], int],
) -> None:
    result = limits_batch[0][1]
    assert (result.id, result.reason) == ("cpu-burner", "timeout"), result.detail
    assert "CPU-time limit" in result.detail
    assert result.seconds < 10  # the 1 s CPU limit fired, not the 20 s wall clock


@pytest.mark.slow
def test_renderer_after_killed_workers_keeps_serving(
    limits_batch: tuple[list[RenderResult], int],
) -> None:
    results, replaced = limits_batch
    assert (results[2].id, results[2].reason) == ("valid", "ok")
    assert replaced == 2  # one worker lost to memory, one to SIGXCPU


def test_render_file_valid_svg_writes_png(tmp_path: Path) -> None:
    source, target = tmp_path / "chart.svg", tmp_path / "chart.png"
    source.write_text(VALID_CHART)
    # A fresh worker needs ~2 s to import and warm up; the 1 s deadline starts after that.
    result = render_file(source, target, RenderSpec(timeout_seconds=1), IMAGE)
    assert (result.id, result.reason) == (str(source), "ok")
    assert target.read_bytes() == result.png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "chart.svg"]


def test_render_file_oversize_svg_writes_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "big.svg", tmp_path / "big.png"
    source.write_bytes(b" " * 2048)
    result = render_file(source, target, RenderSpec(max_svg_bytes=1024), IMAGE)
    assert result.reason == "too_large"
    assert "2,048 bytes" in result.detail
    assert not target.exists()


def test_init_worker_parent_credentials_dropped() -> None:
    code = (
        "import os; os.environ['AWS_SECRET_ACCESS_KEY'] = 'x'; "
        "from mmzero_runtime.render.rasterise import init_worker; init_worker(); "
        "print(sorted(os.environ))"
    )
    kept = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "AWS_SECRET_ACCESS_KEY" not in kept
    assert "'PATH'" in kept  # what fonts and locale need is kept
