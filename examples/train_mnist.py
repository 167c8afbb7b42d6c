"""Train an MLP on MNIST with xpnet's high-level API and print its test accuracy.

    python examples/train_mnist.py                   # NumPy on the CPU
    python examples/train_mnist.py --backend cupy    # an NVIDIA GPU (pip install "xpnet[cuda12]")

MNIST is downloaded and checksum-verified into ~/.cache/xpnet on first use; --data-dir (or
$XPNET_DATA_DIR) points at another copy. The same script runs unchanged on every backend:
only the ``set_backend`` call differs.
"""

from __future__ import annotations

import argparse
import time

import xpnet
from xpnet import Sequential
from xpnet.datasets import load_mnist, to_unit_range, train_val_split
from xpnet.layers import Dense, Dropout, ReLU
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=None, help="default: $XPNET_DATA_DIR or the cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    backend = xpnet.set_backend(args.backend)
    print(f"backend: {backend.name} on {backend.device_name}")

    (X_train, y_train), (X_test, y_test) = load_mnist(args.data_dir)
    # The network sees pixels in [0, 1]: uint8 0..255 divided by 255.
    X_train, X_test = to_unit_range(X_train), to_unit_range(X_test)
    X_train, y_train, X_val, y_val = train_val_split(X_train, y_train, 0.1, seed=args.seed)

    model = Sequential(
        [
            Dense(784, 256),
            ReLU(),
            Dropout(0.2),
            Dense(256, 128),
            ReLU(),
            Dropout(0.2),
            Dense(128, 10),
        ],
        seed=args.seed,
    )
    model.summary()

    start = time.perf_counter()
    model.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=Adam(lr=1e-3),
        loss=SoftmaxCrossEntropy(),
        validation_data=(X_val, y_val),
        verbose=1,
    )
    seconds = time.perf_counter() - start

    scores = model.evaluate(X_test, y_test)
    print(f"trained {args.epochs} epochs in {seconds:.1f}s")
    print(f"test accuracy: {scores['accuracy']:.4f} (loss {scores['loss']:.4f})")


if __name__ == "__main__":
    main()
