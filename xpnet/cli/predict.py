"""``xpnet predict MODEL FILE``: the predicted class and its probability for each image."""

from __future__ import annotations

import argparse

import numpy as np

from ..datasets.images import read_inputs
from .common import Command, CommandError, load_model_file

__all__ = ["COMMAND"]


def _add_arguments(predict: argparse.ArgumentParser) -> None:
    predict.add_argument("model", metavar="MODEL", help="a model file saved by --save")
    predict.add_argument("file", metavar="FILE", help=".npy array or image file")


def _run(args: argparse.Namespace) -> int:
    model = load_model_file(args.model, args.backend)
    n_in = model.n_features_in
    if n_in is None:
        raise CommandError(f"the model in {args.model} has no Dense layer")
    X = read_inputs(args.file, n_in, model.dtype)
    proba = model.predict_proba(X)
    labels = np.argmax(proba, axis=1)
    for i, (label, p) in enumerate(zip(labels, proba[np.arange(len(labels)), labels], strict=True)):
        print(f"{i}\t{label}\t{p:.4f}")
    return 0


COMMAND = Command(
    name="predict",
    help="classify images with a saved model",
    description="Print the predicted class and its probability for each image in FILE: "
    "a .npy array of raw pixels, (n, 784), (n, 28, 28) or one (28, 28) image, values "
    "0..255 (for an 8x8 digits model: 64 pixels, values 0..16), or an image file such as "
    "a PNG (needs Pillow), which is converted to grayscale, resized to the model's image "
    "size and inverted when its background is light. Prints one tab-separated line per "
    "image: its index, the predicted class and that class's probability.",
    add_arguments=_add_arguments,
    run=_run,
)
