"""Train an MLP on MNIST with xpnet's high-level API and print its test accuracy.

    python examples/train_mnist.py                   # NumPy on the CPU
    python examples/train_mnist.py --backend cupy    # an NVIDIA GPU (pip install "xpnet[cuda12]")

The network, the optimizer and the learning-rate step come from :mod:`xpnet.recipe`, the
recipe that ``xpnet train`` uses: this script is that command written out, so its defaults
(784-512-256-10, ReLU, dropout 0.2, Adam with a final low-rate phase) are the recommended
ones. MNIST is downloaded and checksum-verified into ~/.cache/xpnet on first use; --data-dir
(or $XPNET_DATA_DIR) points at another copy. The same script runs unchanged on every
backend: only the ``set_backend`` call differs.
"""

from __future__ import annotations

import argparse
import time

import xpnet
from xpnet.datasets import load_dataset, train_val_split
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.recipe import DEFAULTS, build_model, make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--data-dir", default=None, help="default: $XPNET_DATA_DIR or the cache")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    args = parser.parse_args()

    backend = xpnet.set_backend(args.backend)
    print(f"backend: {backend.name} on {backend.device_name}")

    # The network sees pixels in [0, 1]: load_dataset divides MNIST's 0..255 by 255.
    data = load_dataset("mnist", args.data_dir)
    assert data.X_train is not None and data.y_train is not None
    X_train, y_train, X_val, y_val = train_val_split(
        data.X_train, data.y_train, DEFAULTS["val_split"], seed=args.seed
    )

    model = build_model(784, 10, seed=args.seed)  # the recipe's hidden layers and dropout
    model.summary()
    optimizer = make_optimizer(
        DEFAULTS["optimizer"],
        schedule=DEFAULTS["lr_schedule"],
        epochs=args.epochs,
        steps_per_epoch=-(-y_train.shape[0] // args.batch_size),  # updates per epoch
    )

    start = time.perf_counter()
    model.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        loss=SoftmaxCrossEntropy(),
        validation_data=(X_val, y_val),
        verbose=1,
    )
    seconds = time.perf_counter() - start

    scores = model.evaluate(data.X_test, data.y_test)
    print(f"trained {args.epochs} epochs in {seconds:.1f}s")
    print(f"test accuracy: {scores['accuracy']:.4f} (loss {scores['loss']:.4f})")


if __name__ == "__main__":
    main()
