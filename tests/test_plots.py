"""xpnet.plots: each function writes a readable PNG and rejects malformed input clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from xpnet import History, plots
from xpnet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (the IHDR chunk follows the signature)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _history(n: int = 6) -> History:
    h = History(["loss", "accuracy", "val_loss", "val_accuracy", "seconds"])
    for e in range(n):
        h.append(
            e,
            {
                "loss": 1.0 / (e + 1),
                "accuracy": 1 - 0.5 / (e + 1),
                "val_loss": 1.2 / (e + 1),
                "val_accuracy": 1 - 0.6 / (e + 1),
                "seconds": 0.1,
            },
        )
    return h


def test_learning_curves_from_history_and_json_dict(tmp_path: Path) -> None:
    h = _history()
    out = plots.plot_learning_curves(h, tmp_path / "a.png")
    assert out == tmp_path / "a.png"
    width, height = _png_size(out)
    assert width > height > 200  # two panels side by side
    # The --json summary's history, with null validation values, draws too.
    as_json = json.loads(json.dumps({**h.history, "val_loss": [None] * 6}))
    w2, _ = _png_size(plots.plot_learning_curves(as_json, tmp_path / "b.png"))
    assert w2 == width
    loss_only = plots.plot_learning_curves({"loss": [3.0, 2.0]}, tmp_path / "c.png")
    assert _png_size(loss_only)[0] < width  # one panel when there is no accuracy


@pytest.mark.parametrize(
    ("history", "error", "fragment"),
    [
        ({"loss": []}, ValueError, "no 'loss' values"),
        ({"loss": [1.0, 0.5], "accuracy": [0.5]}, ValueError, "one value per epoch (2)"),
        ([1.0, 2.0], TypeError, "expects a History or a mapping"),
    ],
)
def test_learning_curves_bad_input(
    tmp_path: Path, history: object, error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        plots.plot_learning_curves(history, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_confusion_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 50, size=(10, 10)) + np.diag(np.full(10, 900))
    out = plots.plot_confusion_matrix(cm, tmp_path / "cm.png")
    width, height = _png_size(out)
    assert width > 400 and height > 400
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]
    plots.plot_confusion_matrix(np.eye(5, dtype=int), tmp_path / "named.png", labels=names)
    assert _png_size(tmp_path / "named.png")[0] > 0


@pytest.mark.parametrize(
    ("cm", "labels", "fragment"),
    [
        (np.zeros((3, 4)), None, "square"),
        (np.array([[1, -1], [0, 2]]), None, "non-negative"),
        (np.eye(3), ["a", "b"], "3 classes but 2 labels"),
    ],
)
def test_confusion_matrix_bad_input(
    tmp_path: Path, cm: np.ndarray, labels: list[str] | None, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        plots.plot_confusion_matrix(cm, tmp_path / "x.png", labels=labels)


def test_sample_predictions_28x28_and_8x8(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 40)
    pred = y.copy()
    pred[::7] = (pred[::7] + 1) % 10
    out = plots.plot_sample_predictions(images, y, pred, tmp_path / "s.png")
    width, height = _png_size(out)
    assert 400 < width < 1500 and 400 < height < 1500  # a 5x5 grid
    small = plots.plot_sample_predictions(
        images[:3, :64].reshape(3, 8, 8), y[:3], pred[:3], tmp_path / "t.png", (8, 8), n=25
    )
    assert _png_size(small)[0] < width  # 3 images need a smaller grid


@pytest.mark.parametrize(
    ("images", "n_labels", "shape", "fragment"),
    [
        (np.zeros((4, 100)), 4, (28, 28), r"expected images of shape \(n, 784\)"),
        (np.zeros((4, 64)), 4, (8, 0), "image_shape must be"),
        (np.zeros((4, 784)), 3, (28, 28), "4 images, 3 true labels and 3 predictions"),
    ],
)
def test_sample_predictions_bad_input(
    tmp_path: Path, images: np.ndarray, n_labels: int, shape: tuple[int, int], fragment: str
) -> None:
    y = np.zeros(n_labels, dtype=int)
    with pytest.raises(ValueError, match=fragment):
        plots.plot_sample_predictions(images, y, y, tmp_path / "x.png", shape)


def test_first_layer_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    out = plots.plot_first_layer_weights(rng.normal(size=(784, 100)), tmp_path / "w.png")
    width, height = _png_size(out)
    assert width > 500 and height > 500  # 64 units: an 8x8 grid
    few = plots.plot_first_layer_weights(rng.normal(size=(64, 5)), tmp_path / "w8.png", (8, 8))
    assert _png_size(few)[0] < width
    with pytest.raises(ValueError, match=r"shape \(784, units\)"):
        plots.plot_first_layer_weights(np.zeros((100, 5)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        plots.plot_first_layer_weights(np.full((64, 2), np.nan), tmp_path / "x.png", (8, 8))


def test_cli_plots_writes_the_four_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("sklearn")
    d = tmp_path / "plots" / "run1"  # created, parents included
    argv = ["train", "--dataset", "digits", "--epochs", "2", "--hidden", "16", "--plots", str(d)]
    assert main(argv) == 0
    names = sorted(p.name for p in d.iterdir())
    assert names == [
        "confusion_matrix.png",
        "first_layer_weights.png",
        "learning_curves.png",
        "sample_predictions.png",
    ]
    for name in names:
        assert _png_size(d / name)[0] > 100
    assert str(d / "learning_curves.png") in capsys.readouterr().out
