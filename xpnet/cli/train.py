"""``xpnet train``: train the recipe's MLP (:mod:`xpnet.recipe`) on a data set, report test
accuracy and the confusion matrix, and optionally save the model, plots and a JSON summary."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..backend import get_backend
from ..datasets.catalog import TEST_FRACTION, Dataset, DatasetSpec, load_dataset
from ..datasets.preprocessing import train_val_split
from ..losses import SoftmaxCrossEntropy
from ..optimizers import Optimizer
from ..recipe import (
    DEFAULT_LR,
    DEFAULT_MOMENTUM,
    DEFAULTS,
    HIDDEN_ACTIVATIONS,
    LR_SCHEDULES,
    NORMS,
    STEP_AT,
    build_model,
    make_optimizer,
)
from .arguments import (
    activation,
    dataset,
    hidden,
    label_smoothing,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from .common import (
    Command,
    check_output_parent,
    confusion,
    finite_or_none,
    print_confusion,
    say,
    write_json_atomic,
)

__all__ = ["COMMAND"]


def _add_arguments(train: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    train.add_argument(
        "--dataset",
        type=dataset,
        default=DatasetSpec(d["dataset"]),
        metavar="{mnist,fashion-mnist,digits,csv:PATH}",
        help="data set (default: mnist). digits: scikit-learn's 8x8 digits; csv:PATH: a "
        "Kaggle-style CSV with a label column and 784 pixel columns. digits and CSV data hold "
        f"out {TEST_FRACTION:.0%}% as a test set (fixed split)",  # %% for argparse
    )
    train.add_argument(
        "--hidden",
        type=hidden,
        default=d["hidden"],
        metavar="W1,W2,...",
        help=f"hidden layer widths (default: {','.join(map(str, d['hidden']))}; 'none' for a "
        "linear classifier)",
    )
    train.add_argument(
        "--activation",
        type=activation,
        default=d["activation"],
        metavar="{" + ",".join(HIDDEN_ACTIVATIONS) + "}",
        help=f"activation after each hidden layer (default: {d['activation']})",
    )
    train.add_argument(
        "--norm",
        choices=tuple(NORMS),
        default="none",
        help="normalisation after each hidden layer, before its activation: batch "
        "(BatchNorm), layer (LayerNorm) or none (default: none)",
    )
    train.add_argument(
        "--dropout",
        type=probability,
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
        type=positive_float,
        default=None,
        help="learning rate (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
        + ")",
    )
    train.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=d["lr_schedule"],
        help=f"step: --lr for the first {STEP_AT * 100:.0f}%% of the epochs, then a tenth of it; "
        f"constant: --lr throughout (default: {d['lr_schedule']})",
    )
    train.add_argument(
        "--momentum",
        type=probability,
        default=None,
        help="momentum of sgd and rmsprop (default: sgd 0.9, rmsprop 0)",
    )
    train.add_argument(
        "--label-smoothing",
        type=label_smoothing,
        default=0.0,
        metavar="S",
        help="label smoothing of the cross-entropy, in [0, 1) (default: 0)",
    )
    train.add_argument(
        "--clip-norm",
        type=non_negative_float,
        default=None,
        metavar="C",
        help="clip the gradients to this global L2 norm before each update (default: none)",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=d["batch_size"],
        metavar="N",
        help=f"samples per update (default: {d['batch_size']})",
    )
    train.add_argument(
        "--epochs",
        type=positive_int,
        default=d["epochs"],
        metavar="N",
        help=f"passes over the training set (default: {d['epochs']})",
    )
    train.add_argument(
        "--val-split",
        type=probability,
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
        type=non_negative_int,
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
    train.add_argument(
        "--distributed",
        action="store_true",
        help="train data-parallel over the ranks of an MPI job (mpiexec -n N xpnet train "
        "--distributed ...); --batch-size is the global batch and rank 0 alone reports and "
        "writes files (needs pip install 'xpnet[mpi]')",
    )


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Errors between options, reported like argparse's own (exit status 2)."""
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint DIR (the checkpoint to resume from)")
    if args.momentum is not None and args.optimizer not in DEFAULT_MOMENTUM:
        parser.error(
            f"--momentum applies to {' and '.join(DEFAULT_MOMENTUM)}, not {args.optimizer}"
        )


def _sample_indices(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` test images, with up to a fifth of the grid given to mistakes."""
    wrong = np.flatnonzero(y_true != y_pred)[: max(1, n // 5)]
    right = np.flatnonzero(y_true == y_pred)[: n - wrong.size]
    return np.sort(np.concatenate([right, wrong]))


def _write_plots(
    directory: Path, history: Any, cm: np.ndarray, data: Dataset, y_pred: np.ndarray, model: Any
) -> list[Path]:
    from .. import plots  # matplotlib is optional: imported only when --plots asks for it

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


def _summary(
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
        "layers": model.get_config()["layers"],
        "hidden": list(args.hidden),
        "activation": args.activation,
        "norm": args.norm,
        "dropout": args.dropout,
        "label_smoothing": args.label_smoothing,
        "clip_norm": args.clip_norm,
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
        "test_loss": finite_or_none(scores["loss"]),
        "train_seconds": None,
        "confusion_matrix": cm.tolist(),
        "labels": data.labels,
        "xpnet_version": __version__,
        # Every key present, one value per epoch: None where there was no validation set.
        "history": {
            key: [finite_or_none(v) for v in (h.get(key) or [math.nan] * epochs_done)]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
        },
    }


def _run(args: argparse.Namespace) -> int:
    if not args.distributed:
        return _train(args, None)
    from ..distributed import init

    comm = init()
    if not comm.is_root:  # rank 0 alone writes the model, plots and JSON
        args.save = args.plots = args.json = None
    try:
        with _root_output(comm):
            status = _train(args, comm)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not interrupted:
            message = str(exc).strip().removeprefix("xpnet: ") or type(exc).__name__
            print(f"xpnet: error: {' '.join(message.split())}", file=sys.stderr)
        _end_job(comm, 130 if interrupted else 1)
        raise
    if status:  # an interrupted run: the ranks may have stopped at different steps
        _end_job(comm, status)
    return status


@contextlib.contextmanager
def _root_output(comm: Any) -> Iterator[None]:
    """Silence standard output on every rank but 0, so an N-rank job reports once."""
    if comm.is_root:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _end_job(comm: Any, status: int) -> None:
    """A failed rank ends the whole job: the others would wait in an all-reduce forever."""
    if comm.size > 1:
        print(f"xpnet: rank {comm.rank} of {comm.size} failed; ending the job", file=sys.stderr)
        comm.abort(status)


def _train(args: argparse.Namespace, comm: Any) -> int:
    quiet = args.quiet
    check_output_parent("--save", args.save)
    check_output_parent("--json", args.json)
    if args.plots:
        from ..plots import require_matplotlib

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
        X.shape[1],
        n_classes,
        args.hidden,
        args.activation,
        args.dropout,
        args.dtype,
        args.seed,
        norm=args.norm,
    )
    optimizer = make_optimizer(
        args.optimizer,
        args.lr,
        args.momentum,
        args.lr_schedule,
        args.epochs,
        steps_per_epoch=-(-y.shape[0] // args.batch_size),
        clip_norm=args.clip_norm,
    )

    n_val = 0 if val is None else val[1].shape[0]
    say(
        quiet,
        f"xpnet {__version__}: {data.name}: {y.shape[0]:,} training, {n_val:,} validation, "
        f"{data.y_test.shape[0]:,} test samples (loaded in {load_seconds:.1f}s)",
    )
    say(quiet, f"backend {backend.name} on {backend.device_name}, {args.dtype}")
    if not quiet:
        model.summary()
    say(
        quiet,
        f"{optimizer!r}, batch size {args.batch_size}, {args.epochs} epochs, seed {args.seed}",
    )

    if comm is not None:
        say(quiet, f"data-parallel over {comm.size} ranks (global batch {args.batch_size})")

    # A progress bar only on a terminal; in a log file a line per epoch reads better.
    verbose = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    t0 = time.perf_counter()
    history = model.fit(
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        loss=SoftmaxCrossEntropy(label_smoothing=args.label_smoothing),
        validation_data=val,
        verbose=verbose,
        checkpoint=args.checkpoint,
        checkpoint_every=1,
        resume=args.resume,
        communicator=comm,
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
    cm = confusion(data.y_test, y_pred, n_classes)
    n_test = data.y_test.shape[0]
    say(quiet, f"trained {len(history.epoch)} epochs in {train_seconds:.1f}s")
    print(
        f"test accuracy {scores['accuracy']:.2%} (loss {scores['loss']:.4f}) on {n_test:,} samples",
        flush=True,
    )
    if not quiet:
        print_confusion(cm, data.labels)

    if args.save:
        model.save(args.save)
        say(quiet, f"saved the model to {args.save}")
    if args.plots:
        for path in _write_plots(Path(args.plots), history, cm, data, y_pred, model):
            say(quiet, f"wrote {path}")
    if args.json:
        counts = {"n_train": int(y.shape[0]), "n_val": int(n_val), "n_test": int(n_test)}
        summary = _summary(args, data, model, optimizer, history, scores, cm, counts)
        summary["train_seconds"] = train_seconds
        summary["world_size"] = 1 if comm is None else comm.size
        write_json_atomic(args.json, summary)
        say(quiet, f"wrote {args.json}")
    return 0


COMMAND = Command(
    name="train",
    help="train a network and report its test accuracy",
    description="Train an MLP (Dense layers, an activation and optional dropout after each "
    "hidden layer) with a stratified validation split, then report test accuracy and the "
    "confusion matrix. With no options: MNIST with the recommended defaults.",
    add_arguments=_add_arguments,
    run=_run,
    data_options=True,
    check=_check,
)
