"""docs/_tools/check_rendered.py, the browser check of ``nox -s docs``: what it counts as raw
TeX, and (where Chromium is installed) that it fails a page whose maths did not render."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "docs" / "_tools" / "check_rendered.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_rendered", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _visible(check, html: str):
    parser = check._Visible()
    parser.feed(html)
    return "".join(parser.text), parser


def test_visible_text_skips_code_scripts_and_hidden_mathml(check):
    text, parser = _visible(
        check,
        "<html><body><p>Before <mjx-container><mjx-math></mjx-math><mjx-assistive-mml>"
        r"<math>\(x\)</math></mjx-assistive-mml></mjx-container> after</p>"
        r"<pre>print('\(')</pre><code>$$</code><script>var a = '\[';</script>"
        "<mjx-container><mjx-merror></mjx-merror></mjx-container></body></html>",
    )
    assert "Before" in text and "after" in text
    assert not any(d in text for d in check.DELIMITERS)
    assert (parser.containers, parser.errors) == (2, 1)


def test_raw_tex_stays_visible(check):
    text, parser = _visible(check, r"<p>the map \(Z = XW\) and $$a$$</p>")
    assert "\\(" in text and "$$" in text and parser.containers == 0


def test_pages_with_maths_are_found(check, tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "a.html").write_text('<p><span class="math notranslate">\\(x\\)</span>')
    (tmp_path / "plain.html").write_text("<p>no maths</p>")
    (tmp_path / "other.html").write_text("<p>no maths</p>")
    pages = check.pages_to_check(tmp_path, ["other.html"])
    assert pages == [tmp_path / "math" / "a.html", tmp_path / "other.html"]
    with pytest.raises(FileNotFoundError, match=r"no page missing\.html"):
        check.pages_to_check(tmp_path, ["missing.html"])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install)")
def test_a_page_without_mathjax_fails_in_the_browser(check, tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html><body><p>Home</p></body></html>")
    # Sphinx's markup for a formula, and a script that would only come from a CDN.
    (site / "math.html").write_text(
        '<html><head><script src="https://cdn.example.invalid/mathjax.js"></script></head>'
        '<body><p>Forward: <span class="math notranslate nohighlight">\\(Z = XW\\)</span>'
        "</p></body></html>"
    )
    assert check.main([str(site), "--page", "index.html"]) == 1
    out = capsys.readouterr().out
    assert "FAIL math.html" in out and "raw TeX" in out
    assert "MathJax typeset 0 formulas, the page has 1" in out
    assert "ok   index.html" in out
