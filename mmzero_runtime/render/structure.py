"""Static check of a parsed SVG before drawing: how many elements `<use>` expands it to.

cairosvg 2.9 stops after 100,000 `<use>` references, but an exponential fan-out (ten `<use>` of
ten `<use>` of ...) spends ~13 s reaching that count, and a `<use>` inside its own target only
ends in RecursionError. Counting the expansion on the element tree first costs one pass and
refuses both at once, as `too_large`.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from mmzero_runtime.render.errors import TooLargeError

MAX_DRAWN_ELEMENTS = 100_000
"""Most elements a document may expand to once every `<use>` is replaced by its target."""

_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def expanded_size(root: Element, limit: int = MAX_DRAWN_ELEMENTS) -> int:
    """Elements drawn after expanding `<use>` (an upper bound: `<defs>` content counts too).

    >>> from xml.etree.ElementTree import fromstring
    >>> expanded_size(fromstring('<svg><rect id="r"/><use href="#r"/><use href="#r"/></svg>'))
    6
    """
    by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
    done: dict[int, int] = {}
    active: set[int] = set()

    def count(element: Element) -> int:
        key = id(element)
        if key in done:
            return done[key]
        if key in active:
            raise TooLargeError(
                f"<{_local(element.tag)} id={element.get('id')!r}> is reached again through "
                "its own <use>; remove the self-reference"
            )
        active.add(key)
        total = 1
        if _local(element.tag) == "use":
            href = element.get(_XLINK_HREF) or element.get("href") or ""
            target = by_id.get(href[1:]) if href.startswith("#") else None
            total += 0 if target is None else count(target)
        for child in element:
            total += count(child)
            if total > limit:
                break
        if total > limit:
            raise TooLargeError(
                f"the document expands to more than {limit:,} elements through <use>; "
                "draw fewer elements or reuse them less"
            )
        active.discard(key)
        done[key] = total
        return total

    return count(root)
