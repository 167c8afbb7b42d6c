"""Sphinx configuration of the xpnet documentation (``nox -s docs`` builds it, warnings as errors).

The pages are MyST Markdown and Jupyter notebooks (myst-nb, executed at build time); the
API reference is generated from the docstrings by autodoc with napoleon reading their NumPy
style. Nothing here reaches the network, so the build works offline, and so does the built
site: MathJax is copied into it (``_static/mathjax``) from the
``sphinx-mathjax-offline`` package of the docs extra instead of being loaded from a CDN.
``docs/_tools/check_rendered.py`` checks, in headless Chromium, that the maths does render.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Document the working tree, not whichever xpnet happens to be installed.
sys.path.insert(0, str(ROOT))
# Notebook kernels are processes of their own: point them at the same working tree.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)

import xpnet  # noqa: E402

project = "xpnet"
author = "The xpnet developers"
copyright = "The xpnet developers, BSD-3-Clause"
version = release = xpnet.__version__

extensions = [
    "myst_nb",  # MyST Markdown (it loads myst_parser) and Jupyter notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# myst-nb parses .md pages as plain MyST (only text notebooks with a jupytext header run).
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_tools", "README.md"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks are stored without outputs and executed top to bottom at every build, so the
# page shows what the code does today; a cell that raises fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_in_temp = True  # files a notebook writes (saved models) stay out of docs/

autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Module docstrings use these headings for prose; napoleon renders them as rubrics.
napoleon_custom_sections = ["File format", "Differences from scikit-learn's MLP"]


def _mathjax_static_dir() -> Path:
    """The folder holding ``mathjax/`` (MathJax 3) in the sphinx-mathjax-offline package."""
    # Its import name has hyphens, so it is found by spec rather than imported.
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "docs: the site serves MathJax itself, from the sphinx-mathjax-offline package; "
            "install the docs dependencies: pip install -e '.[docs]' (or run nox -s docs)"
        )
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (static / "mathjax" / "tex-chtml.js").is_file():
        raise RuntimeError(f"docs: no MathJax (mathjax/tex-chtml.js) under {static}")
    return static


# _static/mathjax/ in the built site; mathjax_path is relative to _static.
html_static_path = [str(_mathjax_static_dir())]
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "furo"
html_title = f"xpnet {release}"
pygments_style = "sphinx"

_BENCH_README = ROOT / "benchmarks" / "README.md"
_BENCH_FALLBACK = """# Benchmarks

No benchmark results are checked in yet. Produce them on your own machine with

```bash
pip install nox
nox -s bench
```

which installs PyTorch and scikit-learn next to xpnet and runs `benchmarks/bench_cpu.py`:
the same MLP trained by each library on MNIST, reporting the median time per epoch over
several runs and the test accuracy reached.
"""


def _readme_for_docs(text: str) -> str:
    """benchmarks/README.md made to fit docs/benchmarks.md: images re-pointed at the files
    beside it, links to scripts and result files shown as repository paths (they are not
    pages of this site), and a title when it has none."""

    def link(match: re.Match[str]) -> str:
        bang, label, target = match.groups()
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|#|/", target):
            return match.group(0)  # URLs and in-page anchors stay as they are
        path = posixpath.normpath(posixpath.join("benchmarks", target))
        return f"![{label}](../{path})" if bang else f"{label} (`{path}`)"

    text = re.sub(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)", link, text)
    if not text.lstrip().startswith("# "):
        text = "# Benchmarks\n\n" + text
    return text


def _benchmarks_page(app: Any, docname: str, source: list[str]) -> None:
    """The benchmarks page is benchmarks/README.md when it exists (it is optional)."""
    if docname != "benchmarks":
        return
    if _BENCH_README.is_file():
        app.env.note_dependency(str(_BENCH_README))
        body = _readme_for_docs(_BENCH_README.read_text(encoding="utf-8"))
    else:
        body = _BENCH_FALLBACK
    source[0] = source[0].replace("<!-- benchmarks-readme -->", body)


def _cli_help(command: str) -> str:
    """``xpnet COMMAND --help`` as the installed parser prints it, 88 columns wide."""
    from xpnet.cli import build_parser

    argv = [command, "--help"] if command else ["--help"]
    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build_parser().parse_args(argv)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue().rstrip()


def _cli_page(app: Any, docname: str, source: list[str]) -> None:
    """Replace ``<!-- cli-help: train -->`` with that command's help, so the flags shown are
    always the ones the code accepts."""
    if docname != "cli":
        return

    def block(match: re.Match[str]) -> str:
        return "```text\n" + _cli_help(match.group(1).strip()) + "\n```"

    source[0] = re.sub(r"<!-- cli-help:([^>]*)-->", block, source[0])


def setup(app: Any) -> None:
    app.connect("source-read", _benchmarks_page)
    app.connect("source-read", _cli_page)
