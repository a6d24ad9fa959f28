"""The built front end loads nothing from the network (VS Code, Colab, offline HTML, air gaps):
no remote URL, no import of another module, no @import or url() to fetch in the CSS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "patchwidget" / "static"
# Names that look like URLs but fetch nothing: XML namespaces of the DOM elements the widget makes.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml"}
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)]*""")
IMPORT = re.compile(r"""\bimport\s*\(|\bimport\s*[\w*{][^;]*?\bfrom\s*["']|\bimport\s*["']""")


@pytest.mark.parametrize("name", ["widget.js", "widget.css"])
def test_bundle_fetches_nothing(name: str) -> None:
    text = (STATIC / name).read_text()
    assert len(text) > 1000, f"{name} looks empty: rebuild with (cd js && npm run build)"
    remote = {u for u in URL.findall(text) if u not in NAMESPACES}
    assert not remote, f"{name} refers to remote URLs: {sorted(remote)[:5]}"
    assert not IMPORT.findall(text), f"{name} imports other modules: {IMPORT.findall(text)[:3]}"
    if name.endswith(".css"):
        assert "@import" not in text and not re.search(r"url\(\s*['\"]?(?!data:)", text)


def test_the_checks_catch_a_remote_import() -> None:
    """The patterns above find what a CDN-loading bundle would contain."""
    cdn = 'import * as d3 from "https://esm.sh/d3@7";\nconst m = await import("./chunk.js");'
    assert URL.findall(cdn) == ["https://esm.sh/d3@7"]
    assert len(IMPORT.findall(cdn)) == 2
