"""A custom network trained with a hand-written loop: every step of training in plain sight.

    python examples/custom_architecture.py                 # scikit-learn's 8x8 digits, seconds
    python examples/custom_architecture.py --backend cupy  # the same loop on a GPU

``Sequential.fit`` does exactly this (plus progress bars, validation and divergence checks);
writing the loop yourself is the way to add a learning-rate schedule, gradient clipping or
anything else ``fit`` does not offer. The digits ship with scikit-learn, so no download is
needed.
"""

from __future__ import annotations

import argparse

import numpy as np

import xpnet
from xpnet import Sequential
from xpnet.datasets import load_digits, scale_pixels, train_val_split
from xpnet.layers import Dense, Dropout, LeakyReLU, Tanh
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.metrics import accuracy, confusion_matrix, format_confusion_matrix
from xpnet.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    backend = xpnet.set_backend(args.backend)
    X, y = load_digits()
    X = scale_pixels(X, 16)  # digits pixels run 0..16; the network wants [0, 1]
    X_train, y_train, X_test, y_test = train_val_split(X, y, 0.2, seed=0)

    # Any stack of layers: here two activations the CLI does not use, and a narrowing middle.
    model = Sequential(
        [
            Dense(64, 128),
            Tanh(),
            Dropout(0.1),
            Dense(128, 64),
            LeakyReLU(0.05),
            Dense(64, 10),
        ],
        seed=args.seed,
    )
    model.summary()
    loss = SoftmaxCrossEntropy()
    optimizer = Adam(lr=2e-3)
    params = model.parameters()

    # The data goes to the device once; each epoch sends one shuffled index array after it.
    xp = backend.xp
    Xd = backend.asarray(X_train)
    yd = backend.asarray(y_train)
    rng = np.random.default_rng(args.seed)
    n = X_train.shape[0]
    for epoch in range(args.epochs):
        order = backend.asarray(rng.permutation(n))
        total = xp.zeros((), dtype=Xd.dtype, device=backend.device)
        for start in range(0, n, args.batch_size):
            idx = order[start : min(start + args.batch_size, n)]  # strict: no overrun
            xb = xp.take(Xd, idx, axis=0)
            yb = xp.take(yd, idx, axis=0)
            logits = model.forward(xb, training=True)
            value = loss.forward(logits, yb)  # a 0-d device array: no host sync per batch
            model.backward(loss.backward())  # fills p.grad for every parameter
            optimizer.step(params)  # one update from each p.grad
            total += value * idx.shape[0]
        if (epoch + 1) % 10 == 0 or epoch == 0:
            print(f"epoch {epoch + 1:3d}/{args.epochs}: loss {float(total) / n:.4f}")

    y_pred = model.predict(X_test)
    print(f"test accuracy: {accuracy(y_test, y_pred):.4f}")
    print(format_confusion_matrix(confusion_matrix(y_test, y_pred, 10)))


if __name__ == "__main__":
    main()
