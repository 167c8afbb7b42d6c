"""Check the built documentation in a real browser: the maths renders, offline.

``nox -s docs`` runs this after the build. Each page is opened from ``file://`` in headless
Chromium with every host name unresolvable (so nothing can come from the network), and the
DOM is dumped once the page's scripts have run. A page passes when

* no raw TeX delimiter (``\\(``, ``\\)``, ``\\[``, ``\\]``, ``$$``) is left in its visible
  text (code blocks excepted: they may show such characters on purpose),
* MathJax typeset as many formulas as the page has (``mjx-container`` elements), and
* none of them is a MathJax error (``mjx-merror``).

The pages checked: every page with maths, plus the ones named with ``--page``.

Usage::

    python docs/_tools/check_rendered.py docs/_build/html --page serving.html \\
        [--screenshot-dir DIR] [--browser PATH]

Exit status 0 when every page passes, 1 when one fails, 2 when the browser or the build is
missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DELIMITERS = ("\\(", "\\)", "\\[", "\\]", "$$")
# Elements whose text a reader does not see as prose: scripts and styles, code (which may
# show delimiters on purpose) and MathJax's hidden MathML copy for screen readers.
SKIPPED = {"script", "style", "noscript", "template", "pre", "code", "mjx-assistive-mml"}
# Sphinx marks every formula with the class "math" (inline spans and display divs).
_MATH_SOURCE = re.compile(r'<(?:span|div) class="math[ "]')


class _Visible(HTMLParser):
    """Visible text of a dumped DOM, and counts of MathJax's output elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.containers = 0
        self.errors = 0
        self._skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mjx-container":
            self.containers += 1
        elif tag == "mjx-merror":
            self.errors += 1
        if tag in SKIPPED:
            self._skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skip:
            # Pop back to the matching element (tolerates unclosed children).
            while self._skip and self._skip.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium executable: ``explicit``, else the first of BROWSERS on the PATH."""
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(browser: str, profile: Path, *args: str) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",  # the sandbox cannot start as root (CI and containers)
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Offline: no host name resolves, so a CDN reference would fail to load.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        *args,
    ]


def dump_dom(browser: str, page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as Chromium serialises it."""
    result = subprocess.run(
        _chromium(browser, profile, "--dump-dom", page.resolve().as_uri()),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(
            f"{browser} failed on {page} (exit {result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def screenshot(browser: str, page: Path, out: Path, profile: Path) -> None:
    """A 1280x1600 PNG of the page as rendered."""
    subprocess.run(
        _chromium(
            browser,
            profile,
            "--hide-scrollbars",
            "--window-size=1280,1600",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ),
        capture_output=True,
        timeout=120,
        check=True,
    )


def check_page(browser: str, page: Path, profile: Path) -> list[str]:
    """The problems found on one page (empty when it renders)."""
    expected = len(_MATH_SOURCE.findall(page.read_text(encoding="utf-8")))
    parser = _Visible()
    parser.feed(dump_dom(browser, page, profile))
    text = " ".join("".join(parser.text).split())
    problems = []
    for delim in DELIMITERS:
        at = text.find(delim)
        if at >= 0:
            problems.append(
                f"raw TeX {delim!r} in the visible text: ...{text[max(0, at - 60) : at + 60]}..."
            )
    if parser.containers < expected:
        problems.append(f"MathJax typeset {parser.containers} formulas, the page has {expected}")
    if parser.errors:
        problems.append(f"{parser.errors} MathJax error(s) (mjx-merror)")
    if not text:
        problems.append("the page shows no text")
    return problems


def pages_to_check(site: Path, named: list[str]) -> list[Path]:
    """Every HTML page with maths, then the named ones (relative to the site)."""
    found = [
        p
        for p in sorted(site.rglob("*.html"))
        if "_static" not in p.parts
        and "_modules" not in p.parts
        and _MATH_SOURCE.search(p.read_text(encoding="utf-8"))
    ]
    for name in named:
        page = site / name
        if not page.is_file():
            raise FileNotFoundError(f"no page {name} in {site}")
        if page not in found:
            found.append(page)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built HTML site (docs/_build/html)")
    parser.add_argument("--page", action="append", default=[], help="also check this page")
    parser.add_argument("--screenshot-dir", type=Path, help="write a PNG of each page here")
    parser.add_argument("--browser", help="Chromium executable (default: found on the PATH)")
    args = parser.parse_args(argv)

    browser = find_browser(args.browser)
    if browser is None:
        print(f"check_rendered: no Chromium found (looked for {', '.join(BROWSERS)})")
        return 2
    if not (args.site / "index.html").is_file():
        print(f"check_rendered: {args.site} is not a built site (no index.html)")
        return 2
    try:
        pages = pages_to_check(args.site, args.page)
    except FileNotFoundError as exc:
        print(f"check_rendered: {exc}")
        return 2
    if args.screenshot_dir:
        args.screenshot_dir.mkdir(parents=True, exist_ok=True)

    failed = 0
    with tempfile.TemporaryDirectory(prefix="xpnet-chromium-") as tmp:
        profile = Path(tmp)
        for page in pages:
            name = page.relative_to(args.site).as_posix()
            problems = check_page(browser, page, profile)
            if args.screenshot_dir:
                out = args.screenshot_dir / (name.replace("/", "-").removesuffix(".html") + ".png")
                screenshot(browser, page, out, profile)
            if problems:
                failed += 1
                print(f"check_rendered: FAIL {name}")
                for problem in problems:
                    print(f"    {problem}")
            else:
                print(f"check_rendered: ok   {name}")
    print(f"check_rendered: {len(pages) - failed} of {len(pages)} pages render offline")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
