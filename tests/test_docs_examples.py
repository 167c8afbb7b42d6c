"""Every code example in the documentation runs.

* ``python`` blocks of each page under ``docs/`` run in order in one fresh namespace per page
  (so a page reads top to bottom like a session), in a temporary working directory.
* ``console`` blocks: each ``$ xpnet ...`` line runs there too, through ``xpnet.cli.main``,
  and must exit 0.
* A block whose first line holds ``docs-test: skip`` (with the reason, e.g. needs MNIST or a
  GPU, shown to the reader too) is not run; ``bash`` blocks are install and developer
  commands (pip, nox), which reach the network or take minutes, and are not run.
* The docstring examples (``>>>``) of every module in the API reference run as doctests.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import pkgutil
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_MARK = "docs-test: skip"
RUN_LANGUAGES = {"python", "console"}
KNOWN_LANGUAGES = RUN_LANGUAGES | {"bash", "text", "none"}
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def skipped(self) -> bool:
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        return SKIP_MARK in first

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _language(info: str) -> str:
    info = info.strip()
    # MyST directive form: ```{code-block} python
    m = re.match(r"\{(code-block|code|sourcecode)\}\s*(\S+)", info)
    if m:
        return m.group(2).lower()
    return info.split()[0].lower() if info else "none"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (directives like ```{toctree} are not code)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info")
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        if info.strip().startswith("{") and not re.match(r"\{(code-block|code|sourcecode)\}", info):
            continue
        blocks.append(Block(page, start + 1, _language(info), "\n".join(body) + "\n"))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def test_the_docs_have_pages_and_runnable_examples():
    assert (DOCS / "index.md").is_file()
    runnable = [b for p in PAGES for b in parse_blocks(p) if b.language in RUN_LANGUAGES]
    assert len(runnable) >= 20, "the docs should show (and this test should run) real examples"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_code_blocks_use_known_languages(page):
    for block in parse_blocks(page):
        assert block.language in KNOWN_LANGUAGES, (
            f"{block.where()}: code block language {block.language!r}; use one of "
            f"{sorted(KNOWN_LANGUAGES)} so this test knows whether to run it"
        )


def _run_console(block: Block) -> None:
    # In-process (xpnet.cli.main is what the `xpnet` script calls): a subprocess per line
    # would spend seconds re-importing; tests/test_packaging.py runs the real script.
    from xpnet.cli import main

    for line in block.code.splitlines():
        if not line.startswith("$ "):
            continue  # shown output
        argv = shlex.split(line[2:])
        assert argv[0] == "xpnet", f"{block.where()}: console blocks run xpnet commands only"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv[1:])
        assert status == 0, (
            f"{block.where()}: `{line[2:]}` exited {status}\n{out.getvalue()}\n{err.getvalue()}"
        )


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if any(b.language in RUN_LANGUAGES for b in parse_blocks(p))],
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    import xpnet

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    saved_backend = xpnet.get_backend()
    try:
        for block in parse_blocks(page):
            if block.language not in RUN_LANGUAGES or block.skipped:
                continue
            if block.language == "console":
                _run_console(block)
            else:
                code = compile(block.code, block.where(), "exec")
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(code, namespace)
            ran += 1
    finally:
        xpnet.set_backend(saved_backend)
    assert ran > 0, f"{page}: every example is marked skipped"


def _xpnet_modules() -> list[str]:
    import xpnet

    names = ["xpnet"]
    for info in pkgutil.walk_packages(xpnet.__path__, "xpnet."):
        if info.name == "xpnet.__main__":
            continue  # running it would run the CLI
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _xpnet_modules())
def test_docstring_examples_run(module_name):
    if module_name == "xpnet.sklearn":
        pytest.importorskip("sklearn")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # e.g. the CuPy kernels without CuPy
        pytest.skip(f"{module_name} needs an optional package: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in finder.find(module, module_name):
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{module_name}: docstring examples failed\n{report.getvalue()}"
