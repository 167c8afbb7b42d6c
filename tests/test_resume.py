"""Training checkpoints: exact resume (in process, after SIGKILL, after SIGINT), refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.io import codec, reader
from xpnet.layers import Dense, Dropout, ReLU
from xpnet.losses import SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam, AdamW, RMSProp
from xpnet.testing import make_blobs

ROOT = Path(__file__).resolve().parents[1]


def make_model(width: int = 16, dtype: str = "float32") -> xpnet.Sequential:
    return xpnet.Sequential(
        [Dense(6, width, activation="relu"), Dropout(0.3), Dense(width, 3)], dtype=dtype, seed=4
    )


@pytest.fixture
def data():
    return make_blobs(n_samples=150, n_features=6, n_classes=3, seed=2)


def same_weights(a, b) -> bool:
    wa = a if isinstance(a, list) else a.get_weights()
    wb = b if isinstance(b, list) else b.get_weights()
    return all(x.tobytes() == y.tobytes() for x, y in zip(wa, wb, strict=True))


def metrics(history) -> dict:
    return {k: v for k, v in history.to_dict().items() if k != "seconds"}


class InterruptAt(SoftmaxCrossEntropy):
    """Softmax cross-entropy that raises KeyboardInterrupt at forward call ``at`` (1-based),
    like a Ctrl-C landing in the middle of an epoch; ``peek`` records, at the first step of
    each epoch, the epoch count in the checkpoint directory."""

    def __init__(self, at: int | None = None, n_batches: int = 0, peek: Path | None = None):
        self.at, self.n_batches, self.peek = at, n_batches, peek
        self.calls = 0
        self.seen: list[int | None] = []

    def forward(self, output, target):
        if self.peek is not None and self.calls % self.n_batches == 0:
            found = reader.find_state(self.peek)
            self.seen.append(
                None if found is None else ckpt.read_checkpoint(found)[0]["training"]["epoch"]
            )
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise KeyboardInterrupt
        return super().forward(output, target)


FIT = {"batch_size": 16, "shuffle": True}


# ----------------------------------------------------------------------------- in process
@pytest.mark.parametrize(
    "make_opt",
    [
        lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda: Adam(lr=3e-3, weight_decay=1e-4),
        lambda: AdamW(lr=3e-3),
        lambda: RMSProp(lr=1e-3, momentum=0.5, centered=True),
    ],
    ids=["sgd-nesterov", "adam", "adamw", "rmsprop-centered"],
)
@pytest.mark.parametrize("seed", [None, 5], ids=["model-rng", "fit-seed"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_is_bit_identical(tmp_path, data, make_opt, seed, dtype):
    X, y = data
    ref = make_model(dtype=dtype)
    h_ref = ref.fit(X, y, epochs=5, optimizer=make_opt(), seed=seed, **FIT)
    first = make_model(dtype=dtype)
    first.fit(X, y, epochs=3, optimizer=make_opt(), seed=seed, checkpoint=tmp_path, **FIT)
    resumed = make_model(dtype=dtype)  # a fresh process would start like this
    h = resumed.fit(
        X, y, epochs=5, optimizer=make_opt(), seed=seed, checkpoint=tmp_path, resume=True, **FIT
    )
    assert same_weights(ref, resumed)
    assert h.epoch == [0, 1, 2, 3, 4]  # epochs counts the total; history has the earlier ones
    assert metrics(h) == metrics(h_ref)


def test_resume_after_the_last_epoch_trains_nothing(tmp_path, data):
    X, y = data
    model = make_model()
    h1 = model.fit(X, y, epochs=3, checkpoint=tmp_path, **FIT)
    again = make_model()
    h2 = again.fit(X, y, epochs=3, checkpoint=tmp_path, resume=True, **FIT)
    assert same_weights(model, again)
    assert metrics(h2) == metrics(h1)


def test_checkpoint_every_writes_when_due_and_after_the_last_epoch(tmp_path, data):
    X, y = data
    n_batches = -(-len(X) // FIT["batch_size"])
    loss = InterruptAt(n_batches=n_batches, peek=tmp_path)
    make_model().fit(X, y, epochs=5, loss=loss, checkpoint=tmp_path, checkpoint_every=2, **FIT)
    assert loss.seen == [None, None, 2, 2, 4]  # at the start of epochs 1..5
    assert ckpt.read_checkpoint(tmp_path)[0]["training"]["epoch"] == 5


@pytest.mark.parametrize("every", [1, 2])
def test_keyboard_interrupt_leaves_the_last_completed_epoch(tmp_path, data, every):
    """Ctrl-C in the middle of epoch 4: fit returns, and the checkpoint holds the state after
    epoch 3 exactly (with every=2 it is written by the interrupt handler)."""
    X, y = data
    n_batches = -(-len(X) // FIT["batch_size"])
    model = make_model()
    loss = InterruptAt(at=3 * n_batches + 4)
    history = model.fit(
        X, y, epochs=5, loss=loss, checkpoint=tmp_path, checkpoint_every=every, **FIT
    )
    assert history.interrupted
    assert history.epoch == [0, 1, 2]
    meta, _ = ckpt.read_checkpoint(tmp_path)
    assert meta["training"]["epoch"] == 3
    three = make_model()
    three.fit(X, y, epochs=3, **FIT)
    assert same_weights(xpnet.load_model(tmp_path), three)
    # ... and resuming from it finishes exactly like an uninterrupted run.
    resumed = make_model()
    h = resumed.fit(X, y, epochs=5, checkpoint=tmp_path, resume=True, **FIT)
    five = make_model()
    h5 = five.fit(X, y, epochs=5, **FIT)
    assert same_weights(resumed, five)
    assert metrics(h) == metrics(h5)


def test_divergence_flushes_the_last_finite_epoch(tmp_path):
    """A run that diverges in epoch 3 with checkpoint_every=5 still leaves epoch 2 on disk."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    y = rng.integers(0, 3, 64)

    class Explode(SoftmaxCrossEntropy):
        calls = 0

        def forward(self, output, target):
            self.calls += 1
            value = super().forward(output, target)
            return value * np.inf if self.calls > 2 * 4 else value

    model = xpnet.Sequential([Dense(4, 8), ReLU(), Dense(8, 3)], seed=0)
    with pytest.raises(xpnet.DivergenceError, match="epoch 3, step 1"):
        model.fit(
            X, y, epochs=5, batch_size=16, loss=Explode(), check_every=1,
            checkpoint=tmp_path, checkpoint_every=5,
        )  # fmt: skip
    assert ckpt.read_checkpoint(tmp_path)[0]["training"]["epoch"] == 2
    assert all(np.isfinite(w).all() for w in xpnet.load_model(tmp_path).get_weights())


def test_npz_training_state_resumes_and_is_replaced(tmp_path, data):
    """A state.npz (written where safetensors was missing) resumes exactly; the next write
    goes to the default format and removes the stale .npz."""
    X, y = data
    make_model().fit(X, y, epochs=2, checkpoint=tmp_path, **FIT)
    meta, arrays = ckpt.read_checkpoint(tmp_path / "state.safetensors")
    meta = {k: v for k, v in meta.items() if not k.endswith("sha256")}
    write = codec.encode(arrays, meta, "npz")
    with open(tmp_path / "state.npz", "wb") as f:
        write(f)
    (tmp_path / "state.safetensors").unlink()
    resumed = make_model()
    resumed.fit(X, y, epochs=4, checkpoint=tmp_path, resume=True, **FIT)
    ref = make_model()
    ref.fit(X, y, epochs=4, **FIT)
    assert same_weights(resumed, ref)
    assert sorted(os.listdir(tmp_path)) == [ckpt.STATE_FILES[ckpt.default_format()]]


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": lambda: make_model(width=12)}, "architecture"),
        ({"model": lambda: make_model(dtype="float64")}, "dtype float32"),
        ({"optimizer": "sgd"}, "optimizer adam"),
        ({"loss": "mse", "y": "onehot"}, "loss softmax_cross_entropy"),
        ({"validation_data": True}, "metrics"),
    ],
    ids=["architecture", "dtype", "optimizer", "loss", "metrics"],
)
def test_resume_refuses_a_mismatched_checkpoint(tmp_path, data, change, message):
    X, y = data
    make_model().fit(X, y, epochs=2, optimizer="adam", checkpoint=tmp_path, **FIT)
    model = change.get("model", make_model)()
    before = model.get_weights()
    kwargs = {"optimizer": change.get("optimizer", "adam"), "loss": change.get("loss")}
    if change.get("y") == "onehot":
        y = np.eye(3)[y]
    if change.get("validation_data"):
        kwargs["validation_data"] = (X[:10], y[:10])
    with pytest.raises(xpnet.CheckpointError, match=f"cannot resume.*{message}"):
        model.fit(X, y, epochs=4, checkpoint=tmp_path, resume=True, **kwargs, **FIT)
    assert same_weights(before, model)  # nothing was changed


def test_resume_warns_when_settings_change(tmp_path, data):
    X, y = data
    make_model().fit(X, y, epochs=2, optimizer=Adam(lr=1e-3), checkpoint=tmp_path, **FIT)
    with pytest.warns(UserWarning, match="hyperparameters"):
        make_model().fit(
            X, y, epochs=3, optimizer=Adam(lr=1e-4), checkpoint=tmp_path, resume=True, **FIT
        )
    with pytest.warns(UserWarning, match="batch_size=8"):
        make_model().fit(
            X, y, epochs=4, batch_size=8, optimizer=Adam(lr=1e-4), checkpoint=tmp_path,
            resume=True,
        )  # fmt: skip


def test_resume_needs_a_checkpoint(tmp_path, data):
    X, y = data
    with pytest.raises(ValueError, match="resume=True needs checkpoint=DIR"):
        make_model().fit(X, y, resume=True)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        make_model().fit(X, y, checkpoint=tmp_path / "empty", resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        make_model().fit(X, y, checkpoint=tmp_path / "file")
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        make_model().fit(X, y, checkpoint=tmp_path, checkpoint_every=0)


def test_resume_refuses_a_plain_model_file_and_a_damaged_state(tmp_path, data):
    X, y = data
    make_model().save(tmp_path / "state.safetensors")
    with pytest.raises(xpnet.CheckpointError, match="no training state"):
        make_model().fit(X, y, epochs=2, checkpoint=tmp_path, resume=True)
    make_model().fit(X, y, epochs=1, checkpoint=tmp_path)
    raw = bytearray((tmp_path / "state.safetensors").read_bytes())
    raw[-1] ^= 0x40
    (tmp_path / "state.safetensors").write_bytes(bytes(raw))
    with pytest.raises(xpnet.CheckpointError, match="SHA-256"):
        make_model().fit(X, y, epochs=2, checkpoint=tmp_path, resume=True)


# ----------------------------------------------------------------------------- real signals
_WORKER = textwrap.dedent(
    """
    import json, signal, sys, time
    import numpy as np, xpnet

    # A job started in the background by a non-interactive shell inherits SIGINT ignored (as
    # under `nohup cmd &`); the SIGINT test needs it delivered as Python's KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from xpnet.layers import Dense, Dropout, ReLU
    from xpnet.losses import SoftmaxCrossEntropy

    class SlowLoss(SoftmaxCrossEntropy):
        # Slows each step so the parent can signal mid-epoch; changes no number.
        def __init__(self, delay):
            self.delay = delay
        def forward(self, output, target):
            time.sleep(self.delay)
            return super().forward(output, target)

    mode, ckdir, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rng = np.random.default_rng(7)
    X = rng.normal(size=(512, 20))
    y = (X[:, 0] > 0).astype(np.int64) + 2 * (X[:, 1] > 0)
    model = xpnet.Sequential(
        [Dense(20, 64, activation="relu"), Dropout(0.3), Dense(64, 32), ReLU(), Dropout(0.2),
         Dense(32, 4)],
        seed=3,
    )
    kwargs = dict(epochs=6, batch_size=32, optimizer=xpnet.optimizers.Adam(lr=3e-3),
                  loss=SlowLoss(delay), validation_data=(X[:64], y[:64]), shuffle=True)
    if mode != "plain":
        kwargs.update(checkpoint=ckdir, resume=mode == "resume")
    print("started", flush=True)
    history = model.fit(X, y, **kwargs)
    model.save(out)
    with open(out + ".json", "w") as f:
        h = history.to_dict()
        h.pop("seconds")
        json.dump({"interrupted": history.interrupted, "history": h}, f)
    """
)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run(script: Path, *args: str) -> None:
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=_env(),
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _start(script: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(script), *args], stdout=subprocess.PIPE, env=_env()
    )
    assert proc.stdout.readline().strip() == b"started"
    return proc


def _wait_for_epoch(directory: Path, epoch: int, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = reader.find_state(directory)
        if found is not None:
            done = ckpt.read_checkpoint(found)[0]["training"]["epoch"]
            if done >= epoch:
                return done
        assert proc.poll() is None, "the worker ended before it was signalled"
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint of epoch {epoch} within a minute")


def _final(out: Path) -> tuple[list[np.ndarray], dict]:
    return xpnet.load_model(out).get_weights(), json.loads(Path(f"{out}.json").read_text())


@pytest.fixture
def worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    _run(script, "plain", "-", str(tmp_path / "reference"), "0")
    return script, _final(tmp_path / "reference")


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, worker):
    script, (ref_weights, ref) = worker
    ckdir = tmp_path / "ck"
    proc = _start(script, "run", str(ckdir), str(tmp_path / "killed"), "0.004")
    try:
        _wait_for_epoch(ckdir, 2, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    done = ckpt.read_checkpoint(ckdir)[0]["training"]["epoch"]
    assert 2 <= done < 6, done  # killed part-way: resume has epochs left to run
    assert not (tmp_path / "killed").exists()
    _run(script, "resume", str(ckdir), str(tmp_path / "resumed"), "0")
    weights, resumed = _final(tmp_path / "resumed")
    assert same_weights(weights, ref_weights)  # byte for byte
    assert resumed["history"] == ref["history"]


def test_sigint_returns_the_history_and_checkpoints_the_last_epoch(tmp_path, worker):
    script, (ref_weights, ref) = worker
    ckdir = tmp_path / "ck"
    proc = _start(script, "run", str(ckdir), str(tmp_path / "interrupted"), "0.004")
    _wait_for_epoch(ckdir, 1, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0  # fit returned; the worker saved and exited normally
    proc.stdout.close()
    _, interrupted = _final(tmp_path / "interrupted")
    assert interrupted["interrupted"] is True
    done = len(interrupted["history"]["epoch"])
    assert 1 <= done < 6
    assert ckpt.read_checkpoint(ckdir)[0]["training"]["epoch"] == done
    _run(script, "resume", str(ckdir), str(tmp_path / "resumed"), "0")
    weights, resumed = _final(tmp_path / "resumed")
    assert same_weights(weights, ref_weights)
    assert resumed["history"] == ref["history"]
