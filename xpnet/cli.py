"""The ``xpnet`` command line: ``train``, ``evaluate MODEL`` and ``predict MODEL FILE``.

Preprocessing is the command line's job, so a saved model only ever sees inputs in [0, 1]:
28x28 pixels (MNIST, Fashion-MNIST, CSV files) are divided by 255 with
:func:`xpnet.datasets.to_unit_range`, and scikit-learn's 8x8 digits, whose pixels run 0..16,
are divided by 16. ``evaluate`` and ``predict`` apply the same scaling, chosen from the
model's input width (784 or 64).

Exit codes: 0 success, 1 a runtime failure (one ``xpnet: error: ...`` line on stderr; the
traceback with ``--debug``), 2 bad options (argparse's usage line), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .backend import use_backend
from .errors import DataError, XpnetError
from .optimizers import Optimizer
from .schedules import StepDecay

__all__ = ["DEFAULTS", "build_parser", "main"]

#: The defaults of ``xpnet train``, measured to reach >= 98% MNIST test accuracy on the NumPy
#: backend in about a minute on a 2-core machine.
DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "hidden": (512, 256),
    "activation": "relu",
    "dropout": 0.2,
    "optimizer": "adam",
    "lr_schedule": "step",
    "batch_size": 128,
    "epochs": 12,
    "val_split": 0.1,
    "seed": 0,
}

#: Learning rate when --lr is not given, per optimizer.
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 0.05}
#: Momentum when --momentum is not given (only SGD and RMSProp take one).
DEFAULT_MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0}

#: Share of the digits and CSV data sets held out as their test set. The split uses a fixed
#: seed, not --seed, so that ``xpnet evaluate`` sees the same test samples as training did.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0

_DATASETS = ("mnist", "fashion-mnist", "digits")
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
_BACKENDS = ("numpy", "cupy", "array_api_strict")
_FASHION_LABELS = [
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
]


class CommandError(XpnetError):
    """A runtime failure reported as one line and exit status 1."""


# --------------------------------------------------------------------------- argument types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _float_in(lo: float, hi: float | None, *, lo_open: bool, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo)
        if hi is not None:
            ok = ok and value < hi
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_probability = _float_in(0.0, 1.0, lo_open=False, what="a number in [0, 1)")
_positive_float = _float_in(0.0, None, lo_open=True, what="a positive number")


def _hidden(text: str) -> tuple[int, ...]:
    """``"256,128"`` -> (256, 128); ``""`` or ``"none"`` -> () (a linear classifier)."""
    if text.strip().lower() in ("", "none"):
        return ()
    widths = []
    for part in text.split(","):
        try:
            width = int(part.strip())
        except ValueError:
            width = 0
        if width < 1:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated positive layer widths such as 256,128, got {text!r}"
            )
        widths.append(width)
    return tuple(widths)


@dataclass(frozen=True)
class DatasetSpec:
    """A --dataset value: a named data set, or ``csv`` with the file's path."""

    name: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"csv:{self.path}" if self.path is not None else self.name


def _dataset(text: str) -> DatasetSpec:
    key = text.strip()
    if key.lower().startswith("csv:"):
        path = key[4:]
        if not path:
            raise argparse.ArgumentTypeError("csv: needs a file path, as in csv:train.csv")
        return DatasetSpec("csv", Path(path).expanduser())
    key = key.lower().replace("_", "-")
    if key == "fashion":
        key = "fashion-mnist"
    if key not in _DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown data set {text!r}; choose from {', '.join(_DATASETS)} or csv:PATH"
        )
    return DatasetSpec(key)


def _backend_name(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    if key not in _BACKENDS:
        raise argparse.ArgumentTypeError(
            f"unknown backend {text!r}; choose from {', '.join(_BACKENDS)}"
        )
    return key


def _activation(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    if key == "leakyrelu":
        key = "leaky_relu"
    if key not in _ACTIVATIONS:
        raise argparse.ArgumentTypeError(
            f"unknown activation {text!r}; choose from {', '.join(_ACTIVATIONS)}"
        )
    return key


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``xpnet`` argument parser (sub-commands ``train``, ``evaluate``, ``predict``)."""
    parser = argparse.ArgumentParser(
        prog="xpnet",
        description="Train and use fully-connected networks on NumPy or CuPy.",
        epilog="Run 'xpnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        type=_backend_name,
        default=None,
        metavar="{numpy,cupy,array_api_strict}",
        help="array backend (default: $XPNET_BACKEND, else numpy)",
    )
    common.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="where MNIST-format files live, in DIR/mnist/ and DIR/fashion-mnist/ "
        "(default: $XPNET_DATA_DIR, else ~/.cache/xpnet)",
    )
    data.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading missing MNIST / Fashion-MNIST files",
    )

    d = DEFAULTS
    train = commands.add_parser(
        "train",
        parents=[common, data],
        help="train a network and report its test accuracy",
        description="Train an MLP (Dense layers, an activation and optional dropout after each "
        "hidden layer) with a stratified validation split, then report test accuracy and the "
        "confusion matrix. With no options: MNIST with the recommended defaults.",
    )
    train.add_argument(
        "--dataset",
        type=_dataset,
        default=DatasetSpec(d["dataset"]),
        metavar="{mnist,fashion-mnist,digits,csv:PATH}",
        help="data set (default: mnist). digits: scikit-learn's 8x8 digits; csv:PATH: a "
        "Kaggle-style CSV with a label column and 784 pixel columns. digits and CSV data hold "
        f"out {TEST_FRACTION:.0%}% as a test set (fixed split)",  # %% for argparse
    )
    train.add_argument(
        "--hidden",
        type=_hidden,
        default=d["hidden"],
        metavar="W1,W2,...",
        help=f"hidden layer widths (default: {','.join(map(str, d['hidden']))}; 'none' for a "
        "linear classifier)",
    )
    train.add_argument(
        "--activation",
        type=_activation,
        default=d["activation"],
        metavar="{" + ",".join(_ACTIVATIONS) + "}",
        help=f"activation after each hidden layer (default: {d['activation']})",
    )
    train.add_argument(
        "--dropout",
        type=_probability,
        default=d["dropout"],
        metavar="P",
        help=f"dropout rate after each hidden activation, 0 for none (default: {d['dropout']})",
    )
    train.add_argument(
        "--optimizer",
        choices=sorted(DEFAULT_LR),
        default=d["optimizer"],
        help=f"optimizer (default: {d['optimizer']})",
    )
    train.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="learning rate (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
        + ")",
    )
    train.add_argument(
        "--lr-schedule",
        choices=("step", "constant"),
        default=d["lr_schedule"],
        help=f"step: --lr for the first {STEP_AT * 100:.0f}%% of the epochs, then a tenth of it; "
        f"constant: --lr throughout (default: {d['lr_schedule']})",
    )
    train.add_argument(
        "--momentum",
        type=_probability,
        default=None,
        help="momentum of sgd and rmsprop (default: sgd 0.9, rmsprop 0)",
    )
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=d["batch_size"],
        metavar="N",
        help=f"samples per update (default: {d['batch_size']})",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=d["epochs"],
        metavar="N",
        help=f"passes over the training set (default: {d['epochs']})",
    )
    train.add_argument(
        "--val-split",
        type=_probability,
        default=d["val_split"],
        metavar="F",
        help="share of the training set held out, stratified, for validation after each "
        f"epoch; 0 for none (default: {d['val_split']})",
    )
    train.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="floating type of weights and activations (default: float32)",
    )
    train.add_argument(
        "--seed",
        type=_non_negative_int,
        default=d["seed"],
        metavar="N",
        help="seed of the weights, the validation split, shuffling and dropout "
        f"(default: {d['seed']})",
    )
    train.add_argument("--save", metavar="PATH", help="save the trained model to PATH")
    train.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNG figures to DIR: learning curves, confusion matrix, sample predictions, "
        "first-layer weights (needs matplotlib: pip install 'xpnet[plot]')",
    )
    train.add_argument("--json", metavar="PATH", help="write a JSON summary of the run to PATH")
    train.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="save a training checkpoint to DIR after every epoch",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --checkpoint DIR (same options as the first run)",
    )
    train.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final test accuracy (no progress bar, no per-epoch lines)",
    )

    # Kept so that errors between options get the train sub-command's usage line.
    train.set_defaults(subparser=train)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common, data],
        help="test accuracy and confusion matrix of a saved model",
        description="Evaluate a model saved with 'xpnet train --save' on a data set's test set.",
    )
    evaluate.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    evaluate.add_argument(
        "--dataset",
        type=_dataset,
        default=None,
        metavar="{mnist,fashion-mnist,digits,csv:PATH}",
        help="data set whose test set to use (default: digits for a model with 64 inputs, "
        "else mnist)",
    )
    evaluate.add_argument("--json", metavar="PATH", help="write the scores as JSON to PATH")

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="classify images with a saved model",
        description="Print the predicted class and its probability for each image in FILE: "
        "a .npy array of raw pixels, (n, 784), (n, 28, 28) or one (28, 28) image, values "
        "0..255 (for an 8x8 digits model: 64 pixels, values 0..16), or an image file such as "
        "a PNG (needs Pillow), which is converted to grayscale, resized to the model's image "
        "size and inverted when its background is light. Prints one tab-separated line per "
        "image: its index, the predicted class and that class's probability.",
    )
    predict.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    predict.add_argument("file", metavar="FILE", help=".npy array or image file")

    export = commands.add_parser(
        "export",
        parents=[common],
        help="export a saved model to ONNX",
        description="Write a model saved with 'xpnet train --save' as an ONNX file (input "
        "'input' [N, n_features], output 'output' [N, n_outputs], the model's dtype) to serve "
        "with onnxruntime. Needs the onnx package: pip install 'xpnet[onnx]'.",
    )
    export.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    export.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    from .onnx import DEFAULT_OPSET

    export.add_argument(
        "--opset",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"ONNX operator set version to write (default: {DEFAULT_OPSET})",
    )
    return parser


def _check_train_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors between options, reported like argparse's own (exit status 2)."""
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint DIR (the checkpoint to resume from)")
    if args.momentum is not None and args.optimizer not in DEFAULT_MOMENTUM:
        parser.error(
            f"--momentum applies to {' and '.join(DEFAULT_MOMENTUM)}, not {args.optimizer}"
        )


# --------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """A data set ready for the model: inputs scaled to [0, 1]."""

    name: str
    X_train: np.ndarray | None
    y_train: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    labels: list[str]


def _image_shape(n_features: int) -> tuple[int, int]:
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise CommandError(
            f"a model with {n_features} inputs does not take square images; the command line "
            "handles 28x28 (784 inputs) and 8x8 (64 inputs) images"
        )
    return side, side


def _pixel_scale(n_features: int) -> int:
    """Full-scale raw pixel value of the data sets with this many inputs: digits 16, else 255."""
    return 16 if n_features == 64 else 255


def scale_pixels(X: np.ndarray, max_value: int, dtype: str = "float32") -> np.ndarray:
    """Raw pixels in ``[0, max_value]`` as ``dtype`` in [0, 1] (255: ``to_unit_range``)."""
    from .datasets import to_unit_range

    if max_value == 255:
        return to_unit_range(X, dtype)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"expected numeric pixel values, got dtype {X.dtype}")
    if X.size and X.dtype.kind == "f" and not np.isfinite(X).all():
        raise DataError("the pixel values include NaN or infinity")
    if X.size and (X.min() < 0 or X.max() > max_value):
        raise DataError(
            f"expected pixel values in [0, {max_value}], found min {X.min():g} and max {X.max():g}"
        )
    return X.astype(dtype) / np.asarray(max_value, dtype=dtype)


def _split_test(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    from .datasets import train_val_split

    return train_val_split(X, y, TEST_FRACTION, seed=TEST_SPLIT_SEED)


def load_dataset(
    spec: DatasetSpec,
    data_dir: str | None,
    download: bool,
    dtype: str = "float32",
    need_train: bool = True,
) -> Dataset:
    """Load a data set, split a test set off when it has none, and scale it to [0, 1]."""
    from . import datasets

    labels = [str(i) for i in range(10)]
    if spec.name in ("mnist", "fashion-mnist"):
        loader = datasets.load_mnist if spec.name == "mnist" else datasets.load_fashion_mnist
        (X, y), (Xt, yt) = loader(data_dir, download=download)
        if spec.name == "fashion-mnist":
            labels = list(_FASHION_LABELS)
        shape, scale = (28, 28), 255
    elif spec.name == "digits":
        X, y, Xt, yt = _split_test(*datasets.load_digits())
        shape, scale = (8, 8), 16
    else:
        assert spec.path is not None
        if not spec.path.is_file():
            raise CommandError(f"CSV file {spec.path} does not exist")
        X, y_csv = datasets.load_csv(spec.path)
        if y_csv is None:
            raise CommandError(
                f"{spec.path} has no 'label' column; training and evaluation need labelled "
                "rows (a Kaggle test.csv can go to 'xpnet predict' once saved as .npy)"
            )
        y = y_csv
        if y.shape[0] < 10:
            raise CommandError(
                f"{spec.path} has {y.shape[0]} rows; at least 10 are needed to hold out a test set"
            )
        X, y, Xt, yt = _split_test(X, y)
        labels = [str(i) for i in range(max(10, int(y.max(initial=0)) + 1))]
        shape, scale = (28, 28), 255
    return Dataset(
        name=str(spec),
        X_train=scale_pixels(X, scale, dtype) if need_train else None,
        y_train=y if need_train else None,
        X_test=scale_pixels(Xt, scale, dtype),
        y_test=yt,
        image_shape=shape,
        labels=labels,
    )


# --------------------------------------------------------------------------- output helpers
def _say(quiet: bool, *parts: Any) -> None:
    if not quiet:
        print(*parts, flush=True)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as JSON so that ``path`` holds either the old file or the whole new one."""
    from .io_utils import atomic_write_bytes

    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def _check_output_parent(option: str, path: str | None) -> None:
    """Fail before training, not after it, when an output file cannot be created."""
    if path is None:
        return
    parent = Path(path).expanduser().parent
    if not parent.is_dir():
        raise CommandError(f"{option} {path}: directory {parent} does not exist")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    from .metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, n_classes)


def _print_confusion(cm: np.ndarray, labels: list[str]) -> None:
    from .metrics import format_confusion_matrix

    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion_matrix(cm, [str(i) for i in range(cm.shape[0])]))
    if any(label != str(i) for i, label in enumerate(labels)):
        print("classes: " + ", ".join(f"{i}={label}" for i, label in enumerate(labels)))


# --------------------------------------------------------------------------- train
def build_model(
    n_inputs: int,
    n_classes: int,
    hidden: Sequence[int],
    activation: str,
    dropout: float,
    dtype: str,
    seed: int,
) -> Any:
    """The CLI's MLP: per hidden layer Dense, the activation and (if p > 0) Dropout."""
    from .layers import Dense, Dropout, LeakyReLU, ReLU, Sigmoid, Tanh
    from .model import Sequential

    act = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid}[activation]

    layers: list[Any] = []
    width = n_inputs
    for h in hidden:
        layers += [Dense(width, h), act()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Dense(width, n_classes))
    return Sequential(layers, dtype=dtype, seed=seed)


#: With --lr-schedule step, the share of the epochs trained at the full rate; the rest use
#: a tenth of it. Measured on MNIST: a final low-rate phase settles the weights that constant
#: Adam keeps shaking (about +0.2 to +0.4 points of test accuracy for the default network).
STEP_AT = 0.7
STEP_FACTOR = 0.1


def decay_epoch(epochs: int) -> int:
    """The first epoch (0-based) trained at the reduced rate under --lr-schedule step."""
    return max(1, round(STEP_AT * epochs)) if epochs > 1 else epochs


def _make_optimizer(
    name: str,
    lr: float | None,
    momentum: float | None,
    schedule: str = "constant",
    epochs: int = 1,
    steps_per_epoch: int = 1,
) -> Any:
    from .optimizers import OPTIMIZERS

    kwargs: dict[str, Any] = {"lr": DEFAULT_LR[name] if lr is None else lr}
    if name in DEFAULT_MOMENTUM:
        kwargs["momentum"] = DEFAULT_MOMENTUM[name] if momentum is None else momentum
    cls = OPTIMIZERS[name]
    if schedule == "step":
        kwargs["schedule"] = StepDecay(decay_epoch(epochs) * steps_per_epoch, STEP_FACTOR)
    return cls(**kwargs)


def _sample_indices(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` test images, with up to a fifth of the grid given to mistakes."""
    wrong = np.flatnonzero(y_true != y_pred)[: max(1, n // 5)]
    right = np.flatnonzero(y_true == y_pred)[: n - wrong.size]
    return np.sort(np.concatenate([right, wrong]))


def _write_plots(
    directory: Path, history: Any, cm: np.ndarray, data: Dataset, y_pred: np.ndarray, model: Any
) -> list[Path]:
    from . import plots

    directory.mkdir(parents=True, exist_ok=True)
    idx = _sample_indices(data.y_test, y_pred, 25)
    return [
        plots.plot_learning_curves(history, directory / "learning_curves.png"),
        plots.plot_confusion_matrix(cm, directory / "confusion_matrix.png", labels=data.labels),
        plots.plot_sample_predictions(
            data.X_test[idx],
            data.y_test[idx],
            y_pred[idx],
            directory / "sample_predictions.png",
            image_shape=data.image_shape,
            n=25,
        ),
        plots.plot_first_layer_weights(
            model.get_weights()[0],
            directory / "first_layer_weights.png",
            image_shape=data.image_shape,
            n=64,
        ),
    ]


def _train_summary(
    args: argparse.Namespace,
    data: Dataset,
    model: Any,
    optimizer: Optimizer,
    history: Any,
    scores: dict[str, float],
    cm: np.ndarray,
    counts: dict[str, int],
) -> dict[str, Any]:
    """The ``--json`` record of a training run (JSON types only; NaN becomes null)."""
    backend = model.backend
    epochs_done = len(history.epoch)
    h = history.history
    return {
        "dataset": data.name,
        "backend": backend.name,
        "device": backend.device_name,
        "dtype": args.dtype,
        "layers": [{"kind": layer.kind, **layer.config()} for layer in model.layers],
        "hidden": list(args.hidden),
        "activation": args.activation,
        "dropout": args.dropout,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "optimizer_hyperparameters": optimizer.hyperparameters(),
        "lr": args.lr if args.lr is not None else DEFAULT_LR[args.optimizer],
        "lr_schedule": args.lr_schedule,
        "val_split": args.val_split,
        "seed": args.seed,
        **counts,
        "test_accuracy": scores["accuracy"],
        "test_loss": _finite_or_none(scores["loss"]),
        "train_seconds": None,
        "confusion_matrix": cm.tolist(),
        "labels": data.labels,
        "xpnet_version": __version__,
        # Every key present, one value per epoch: None where there was no validation set.
        "history": {
            key: [_finite_or_none(v) for v in (h.get(key) or [math.nan] * epochs_done)]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
        },
    }


def _run_train(args: argparse.Namespace) -> int:
    from .backend import get_backend
    from .datasets import train_val_split

    quiet = args.quiet
    _check_output_parent("--save", args.save)
    _check_output_parent("--json", args.json)
    if args.plots:
        from .plots import require_matplotlib

        require_matplotlib()  # before a minute of training, not after it
    backend = get_backend()

    t_load = time.perf_counter()
    data = load_dataset(args.dataset, args.data_dir, not args.no_download, args.dtype)
    assert data.X_train is not None and data.y_train is not None
    X, y = data.X_train, data.y_train
    val = None
    if args.val_split > 0:
        X, y, Xv, yv = train_val_split(X, y, args.val_split, seed=args.seed)
        val = (Xv, yv)
    load_seconds = time.perf_counter() - t_load

    n_classes = len(data.labels)
    model = build_model(
        X.shape[1], n_classes, args.hidden, args.activation, args.dropout, args.dtype, args.seed
    )
    optimizer = _make_optimizer(
        args.optimizer,
        args.lr,
        args.momentum,
        args.lr_schedule,
        args.epochs,
        steps_per_epoch=-(-y.shape[0] // args.batch_size),
    )

    n_val = 0 if val is None else val[1].shape[0]
    _say(
        quiet,
        f"xpnet {__version__}: {data.name}: {y.shape[0]:,} training, {n_val:,} validation, "
        f"{data.y_test.shape[0]:,} test samples (loaded in {load_seconds:.1f}s)",
    )
    _say(quiet, f"backend {backend.name} on {backend.device_name}, {args.dtype}")
    if not quiet:
        model.summary()
    _say(
        quiet,
        f"{optimizer!r}, batch size {args.batch_size}, {args.epochs} epochs, seed {args.seed}",
    )

    # A progress bar only on a terminal; in a log file a line per epoch reads better.
    verbose = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    t0 = time.perf_counter()
    history = model.fit(
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        validation_data=val,
        verbose=verbose,
        checkpoint=args.checkpoint,
        checkpoint_every=1,
        resume=args.resume,
    )
    train_seconds = time.perf_counter() - t0
    if history.interrupted:
        hint = " (continue with --resume)" if args.checkpoint else ""
        print(
            f"xpnet: interrupted after {len(history.epoch)} epochs; nothing saved{hint}",
            file=sys.stderr,
        )
        return 130

    scores = model.evaluate(data.X_test, data.y_test)
    y_pred = model.predict(data.X_test)
    cm = _confusion(data.y_test, y_pred, n_classes)
    n_test = data.y_test.shape[0]
    _say(quiet, f"trained {len(history.epoch)} epochs in {train_seconds:.1f}s")
    print(
        f"test accuracy {scores['accuracy']:.2%} (loss {scores['loss']:.4f}) on {n_test:,} samples",
        flush=True,
    )
    if not quiet:
        _print_confusion(cm, data.labels)

    if args.save:
        model.save(args.save)
        _say(quiet, f"saved the model to {args.save}")
    if args.plots:
        for path in _write_plots(Path(args.plots), history, cm, data, y_pred, model):
            _say(quiet, f"wrote {path}")
    if args.json:
        counts = {"n_train": int(y.shape[0]), "n_val": int(n_val), "n_test": int(n_test)}
        summary = _train_summary(args, data, model, optimizer, history, scores, cm, counts)
        summary["train_seconds"] = train_seconds
        write_json_atomic(args.json, summary)
        _say(quiet, f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- evaluate / predict
def _load_model(path: str, backend: str | None) -> Any:
    from . import load_model

    if not Path(path).exists():
        raise CommandError(f"model file {path} does not exist")
    return load_model(path, backend=backend)


def _run_evaluate(args: argparse.Namespace) -> int:
    _check_output_parent("--json", args.json)
    model = _load_model(args.model, args.backend)
    n_in = model.n_features_in
    spec = args.dataset
    if spec is None:
        spec = DatasetSpec("digits" if n_in == 64 else "mnist")
    data = load_dataset(spec, args.data_dir, not args.no_download, model.dtype, need_train=False)
    if data.X_test.shape[1] != n_in:
        raise CommandError(
            f"the model takes {n_in} inputs but {data.name} images have "
            f"{data.X_test.shape[1]} pixels; choose the data set it was trained on with --dataset"
        )
    n_classes = max(len(data.labels), int(model.n_outputs or 0))
    scores = model.evaluate(data.X_test, data.y_test)
    y_pred = model.predict(data.X_test)
    cm = _confusion(data.y_test, y_pred, n_classes)
    n_test = data.y_test.shape[0]
    print(f"model {args.model}: {model.backend.name}, {model.dtype}")
    print(
        f"test accuracy {scores['accuracy']:.2%} (loss {scores['loss']:.4f}) on {n_test:,} "
        f"{data.name} test samples"
    )
    _print_confusion(cm, data.labels)
    if args.json:
        write_json_atomic(
            args.json,
            {
                "model": str(args.model),
                "dataset": data.name,
                "backend": model.backend.name,
                "dtype": model.dtype,
                "n_test": int(n_test),
                "test_accuracy": scores["accuracy"],
                "test_loss": _finite_or_none(scores["loss"]),
                "confusion_matrix": cm.tolist(),
            },
        )
    return 0


def _read_image_file(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An image file as uint8 grayscale of ``shape``, dark background, light strokes."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise CommandError(
            f"reading {path.suffix or 'image'} files needs Pillow (pip install pillow); "
            "or pass the pixels as a .npy file"
        ) from exc
    try:
        with Image.open(path) as img:
            gray = img.convert("L").resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
            pixels = np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise CommandError(f"{path} is not a readable image ({exc})") from exc
    # MNIST digits are light on dark; a scan or a drawing is usually dark on light. The
    # border says which: it is background in any centred digit.
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 127:
        pixels = 255 - pixels
    return pixels.reshape(1, -1)


def read_inputs(path: str | os.PathLike[str], n_features: int, dtype: str) -> np.ndarray:
    """Images for ``xpnet predict`` as a (n, n_features) array in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"input file {path} does not exist")
    shape = _image_shape(n_features)
    if path.suffix.lower() != ".npy":
        return scale_pixels(_read_image_file(path, shape), 255, dtype)
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CommandError(f"{path} is not a readable .npy array ({exc})") from exc
    if X.shape in ((n_features,), shape):
        X = X.reshape(1, n_features)
    elif X.ndim == 3 and X.shape[1:] == shape:
        X = X.reshape(X.shape[0], n_features)
    if X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        h, w = shape
        raise CommandError(
            f"{path}: expected images of shape (n, {n_features}), (n, {h}, {w}), ({h}, {w}) or "
            f"({n_features},) for this model, got an array of shape {X.shape}"
        )
    max_value = _pixel_scale(n_features)
    if X.dtype.kind == "f" and X.size and 0 < np.nanmax(X) <= 1.0:
        raise CommandError(
            f"{path}: the values all lie in [0, 1], but xpnet predict expects raw pixel values "
            f"0..{max_value} (it scales them itself); multiply by {max_value} first"
        )
    try:
        return scale_pixels(X, max_value, dtype)
    except DataError as exc:
        raise CommandError(f"{path}: {exc}") from exc


def _run_predict(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.backend)
    n_in = model.n_features_in
    if n_in is None:
        raise CommandError(f"the model in {args.model} has no Dense layer")
    X = read_inputs(args.file, n_in, model.dtype)
    proba = model.predict_proba(X)
    labels = np.argmax(proba, axis=1)
    for i, (label, p) in enumerate(zip(labels, proba[np.arange(len(labels)), labels], strict=True)):
        print(f"{i}\t{label}\t{p:.4f}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .onnx import export_command

    return export_command(args.model, args.out, opset=args.opset, backend=args.backend)


# --------------------------------------------------------------------------- entry point
_COMMANDS = {
    "train": _run_train,
    "evaluate": _run_evaluate,
    "predict": _run_predict,
    "export": _run_export,
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if text.startswith("xpnet: "):
        text = text[len("xpnet: ") :]
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "train":
            _check_train_args(args.subparser, args)
    except SystemExit as exc:  # --help, --version, and usage errors (status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        # A scoped switch, so that main() called in-process leaves the caller's backend alone.
        with use_backend(args.backend) if args.backend else contextlib.nullcontext():
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        known = isinstance(exc, (XpnetError, ValueError, OSError, ImportError))
        message = _one_line(exc)
        if not known:
            message = f"{type(exc).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"xpnet: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
