"""The `<use>` expansion count that refuses self-references and fan-out before drawing."""

from __future__ import annotations

from xml.etree.ElementTree import fromstring

import pytest

from mmzero_runtime.render.errors import TooLargeError
from mmzero_runtime.render.structure import expanded_size

SVG = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">{}</svg>'


def fan_out(levels: int, width: int) -> str:
    """`levels` groups, each using the previous one `width` times: width**levels rectangles."""
    groups = "".join(
        f'<g id="l{i}">' + f'<use xlink:href="#l{i - 1}"/>' * width + "</g>"
        for i in range(1, levels + 1)
    )
    return f'<defs><rect id="l0"/>{groups}</defs><use href="#l{levels}"/>'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("", 1, id="empty-root"),  # the <svg> itself
        pytest.param('<rect id="r"/><use href="#r"/>', 4, id="href"),  # svg, rect, use + rect
        pytest.param('<rect id="r"/><use xlink:href="#r"/>', 4, id="xlink-href"),  # SVG 1.1 form
        pytest.param('<use href="#missing"/>', 2, id="missing-target"),  # cairosvg skips it
        pytest.param('<use href="other.svg#r"/>', 2, id="external-target"),  # the fetcher refuses
        pytest.param(fan_out(3, 3), 1 + (1 + 1 + 7 + 25 + 79) + (1 + 79), id="fan-3x3"),
    ],
)
def test_expanded_size_document_counts_drawn_elements(body: str, expected: int) -> None:
    # fan-3x3: l0 = 1 and l_i = 1 + 3 * (1 + l_{i-1}), so l1..l3 = 7, 25, 79; the total is
    # svg + defs (itself, l0..l3) + the top <use> (itself, l3): <defs> content counts too.
    assert expanded_size(fromstring(SVG.format(body))) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('<g id="a"><use href="#a"/></g>', id="use-inside-own-target"),
        pytest.param('<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g>', id="mutual"),
        pytest.param('<use id="u" href="#u"/>', id="use-refers-to-itself"),
    ],
)
def test_expanded_size_reference_cycle_raises_too_large(body: str) -> None:
    with pytest.raises(TooLargeError, match="reached again through its own <use>"):
        expanded_size(fromstring(SVG.format(body)))


def test_expanded_size_exponential_fan_out_raises_too_large() -> None:
    # 10 levels of 10 uses: 10**10 rectangles, refused without expanding them
    with pytest.raises(TooLargeError, match="more than 100,000 elements"):
        expanded_size(fromstring(SVG.format(fan_out(10, 10))))


def test_expanded_size_under_limit_passes_at_custom_limit() -> None:
    root = fromstring(SVG.format(fan_out(2, 10)))
    assert expanded_size(root, limit=1_000) == expanded_size(root)
