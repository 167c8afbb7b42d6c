"""``xpnet evaluate MODEL``: test accuracy and confusion matrix of a saved model."""

from __future__ import annotations

import argparse

from ..datasets.catalog import DatasetSpec, load_dataset
from .arguments import dataset
from .common import (
    Command,
    CommandError,
    check_output_parent,
    confusion,
    finite_or_none,
    load_model_file,
    print_confusion,
    write_json_atomic,
)

__all__ = ["COMMAND"]


def _add_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    evaluate.add_argument(
        "--dataset",
        type=dataset,
        default=None,
        metavar="{mnist,fashion-mnist,digits,csv:PATH}",
        help="data set whose test set to use (default: digits for a model with 64 inputs, "
        "else mnist)",
    )
    evaluate.add_argument("--json", metavar="PATH", help="write the scores as JSON to PATH")


def _run(args: argparse.Namespace) -> int:
    check_output_parent("--json", args.json)
    model = load_model_file(args.model, args.backend)
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
    cm = confusion(data.y_test, y_pred, n_classes)
    n_test = data.y_test.shape[0]
    print(f"model {args.model}: {model.backend.name}, {model.dtype}")
    print(
        f"test accuracy {scores['accuracy']:.2%} (loss {scores['loss']:.4f}) on {n_test:,} "
        f"{data.name} test samples"
    )
    print_confusion(cm, data.labels)
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
                "test_loss": finite_or_none(scores["loss"]),
                "confusion_matrix": cm.tolist(),
            },
        )
    return 0


COMMAND = Command(
    name="evaluate",
    help="test accuracy and confusion matrix of a saved model",
    description="Evaluate a model saved with 'xpnet train --save' on a data set's test set.",
    add_arguments=_add_arguments,
    run=_run,
    data_options=True,
)
