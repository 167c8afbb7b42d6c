"""examples/walkthrough.ipynb: stored without outputs, executed top to bottom, and in the docs.

The notebook runs in a fresh Jupyter kernel (nbclient, ipykernel: the dev extra), in a
temporary directory so the files it writes stay out of the repository, and with this working
tree's xpnet on the kernel's path. It runs on scikit-learn's digits in seconds; the MNIST
variant runs when ``$XPNET_DATA_DIR`` holds the files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from datasets_helpers import mnist_root as _mnist_root

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "walkthrough.ipynb"
DOCS_PAGE = ROOT / "docs" / "walkthrough.ipynb"
CELL_TIMEOUT = 120  # seconds per cell: generous for a shared CI machine, each takes ~1 s


def _cells() -> list[dict[str, Any]]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def test_stored_without_outputs_or_execution_counts():
    cells = _cells()
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 10, "the walkthrough lost its code cells"
    stored = [i for i, c in enumerate(cells) if c.get("outputs")]
    counted = [i for i, c in enumerate(cells) if c.get("execution_count") is not None]
    assert not stored, f"cells {stored} carry outputs: clear them before committing"
    assert not counted, f"cells {counted} carry execution counts: clear them before committing"
    # Nor what a session records about a run: execution timings, widget state.
    timed = [i for i, c in enumerate(cells) if {"execution", "ExecuteTime"} & set(c["metadata"])]
    assert not timed, f"cells {timed} carry execution timings"
    assert "widgets" not in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["metadata"]


def test_is_a_valid_notebook():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_covers_the_walkthrough():
    source = "\n".join("".join(c["source"]) for c in _cells() if c["cell_type"] == "code")
    for needed in (
        "load_digits()",
        "load_mnist(download=False)",
        "model.forward(xb, training=True)",
        "model.backward(",
        "optimizer.step(model.parameters())",
        "check_layer(",
        "check_gradient(",
        "EarlyStopping(",
        "CSVLogger(",
        "(Callback)",
        "plot_learning_curves(",
        "plot_confusion_matrix(",
        'unavailable_reason("cupy")',
        'xpnet.set_backend("cupy")',
        "model.save(",
        "xpnet.load_model(",
        "export(model,",
        "onnxruntime",
    ):
        assert needed in source, f"the walkthrough no longer shows {needed}"


def test_is_a_page_of_the_docs():
    # The docs page is the notebook itself (a symlink), so the two cannot drift apart.
    assert DOCS_PAGE.is_symlink(), "docs/walkthrough.ipynb should link to the example"
    assert DOCS_PAGE.resolve() == NOTEBOOK.resolve()
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert re.search(r"^walkthrough$", index, re.M), "the walkthrough is in no toctree"


def _execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path | None) -> str:
    """Run the notebook in a fresh kernel in ``tmp_path``; return its text outputs."""
    for module in ("nbclient", "nbformat", "ipykernel", "sklearn", "matplotlib", "IPython"):
        pytest.importorskip(module)
    import nbformat
    from nbclient import NotebookClient

    # The kernel is a child process: it inherits this environment.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    if data_dir is None:
        monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("XPNET_DATA_DIR", str(data_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on a failure

    texts, images = [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, "a code cell did not run"
        for out in cell.outputs:
            assert out.output_type != "error", out
            if out.output_type == "stream" and out.name == "stdout":
                texts.append(out.text)
            elif "data" in out:
                images += "image/png" in out.data
                texts.append(out.data.get("text/plain", ""))
    assert images == 3, f"expected 3 inline figures, got {images}"
    return "".join(texts)


def _check_run(text: str, tmp_path: Path, dataset: str, n_features: int) -> None:
    assert f"{dataset}: X_train" in text
    assert re.search(rf"xb \(32, {n_features}\) float32", text), text
    assert "logits (32, 10)" in text and "loss () =" in text
    assert f"layer 0 Dense.W: data ({n_features}, 64), grad ({n_features}, 64)" in text
    steps = [float(v) for v in re.findall(r"loss after (?:one step|50 steps): ([0-9.e-]+)", text)]
    assert len(steps) == 2 and steps[1] < steps[0], text
    assert "d loss / d logits agrees with finite differences" in text
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", text).group(1))
    assert accuracy > 0.9, text
    assert "same predictions: True" in text
    assert "active backend: numpy" in text
    if importlib.util.find_spec("cupy") is None:
        assert "CuPy backend not available here" in text
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        assert "largest difference in the logits" in text
    # Everything it wrote went to its working directory, none into the repository.
    for name in ("training_log.csv", "curves.png", "confusion.png", "walkthrough.xpnet"):
        assert (tmp_path / name).is_file(), name
        assert not (NOTEBOOK.parent / name).exists(), name
    header = (tmp_path / "training_log.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,loss,accuracy,val_loss,val_accuracy")


def test_runs_top_to_bottom_on_digits(tmp_path, monkeypatch):
    text = _execute(tmp_path, monkeypatch, data_dir=None)
    _check_run(text, tmp_path, "digits", 64)


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.skipif(_mnist_root() is None, reason="MNIST files not in $XPNET_DATA_DIR/mnist/")
def test_runs_top_to_bottom_on_mnist(tmp_path, monkeypatch):
    text = _execute(tmp_path, monkeypatch, data_dir=_mnist_root())
    _check_run(text, tmp_path, "MNIST", 784)
