"""The ``xpnet`` command line, in-process (``xpnet.cli.main``) and as ``python -m xpnet``.

Training runs use scikit-learn's 8x8 digits or a tiny CSV file, so everything here runs offline
in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.cli import DEFAULTS, main

pytest.importorskip("sklearn")  # the digits data set

ROOT = Path(__file__).resolve().parents[1]
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")
SUMMARY_TYPES = {
    "dataset": str,
    "backend": str,
    "dtype": str,
    "layers": list,
    "epochs": int,
    "batch_size": int,
    "optimizer": str,
    "lr": float,
    "seed": int,
    "test_accuracy": float,
    "test_loss": float,
    "train_seconds": float,
    "history": dict,
}
# Small and quick, but enough to learn the digits well.
DIGITS = ["train", "--dataset", "digits", "--hidden", "64", "--batch-size", "32", "--epochs", "15"]
FAST = [*DIGITS, "--lr", "0.003"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xpnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=ROOT,
    )


def _error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("xpnet: error: "), lines[0]
    return lines[0]


def _raw_digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The CLI's digits test set, in raw pixel units 0..16."""
    from xpnet.cli import TEST_FRACTION, TEST_SPLIT_SEED
    from xpnet.datasets import load_digits, train_val_split

    X, y = load_digits()
    _, _, X_test, y_test = train_val_split(X, y, TEST_FRACTION, seed=TEST_SPLIT_SEED)
    return X_test, y_test


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One digits run with --save and --json, shared by the tests that read its outputs."""
    d = tmp_path_factory.mktemp("trained")
    model, summary = d / "digits.xpnet", d / "summary.json"
    code = main([*FAST, "--save", str(model), "--json", str(summary), "--quiet"])
    assert code == 0
    return {"model": model, "summary": json.loads(summary.read_text()), "dir": d}


# --------------------------------------------------------------------------- parsing
def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xpnet {xpnet.__version__}"
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--dataset", "--hidden", "--optimizer", "--checkpoint", "--resume", "--debug"):
        assert option in out
    assert "hold out 20% as a test set" in " ".join(out.split())


def test_defaults_are_the_documented_recommendation() -> None:
    args = xpnet.cli.build_parser().parse_args(["train"])
    assert str(args.dataset) == "mnist"
    assert args.hidden == DEFAULTS["hidden"]
    assert (args.epochs, args.batch_size, args.dropout) == (
        DEFAULTS["epochs"],
        DEFAULTS["batch_size"],
        DEFAULTS["dropout"],
    )
    assert (args.optimizer, args.lr, args.val_split) == ("adam", None, DEFAULTS["val_split"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND"),
        (["fly"], "invalid choice"),
        (["train", "--epochs", "0"], "--epochs: expected a positive integer"),
        (["train", "--batch-size", "many"], "--batch-size"),
        (["train", "--dropout", "1.0"], "--dropout: expected a number in [0, 1)"),
        (["train", "--lr", "-0.1"], "--lr: expected a positive finite number"),
        (["train", "--lr", "inf"], "--lr: expected a positive finite number, got 'inf'"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--hidden", "256,x"], "--hidden: expected comma-separated"),
        (["train", "--dataset", "cifar10"], "unknown data set 'cifar10'"),
        (["train", "--dataset", "csv:"], "csv: needs a file path"),
        (["train", "--backend", "tpu"], "unknown backend 'tpu'"),
        (["train", "--optimizer", "lbfgs"], "invalid choice"),
        (["train", "--activation", "swish"], "unknown activation 'swish'"),
        (["train", "--norm", "group"], "invalid choice"),
        (["train", "--label-smoothing", "1"], "--label-smoothing"),
        (["train", "--clip-norm", "-1"], "--clip-norm"),
        (["train", "--dtype", "float16"], "invalid choice"),
        (["train", "--val-split", "1"], "--val-split"),
        (["train", "--resume"], "--resume needs --checkpoint"),
        (["train", "--momentum", "0.9"], "--momentum applies to sgd and rmsprop, not adam"),
        (["train", "--no-such-option"], "unrecognized arguments"),
        (["predict", "model.xpnet"], "required: FILE"),
    ],
)
def test_bad_options_exit_2_with_usage(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: xpnet")
    assert fragment in err.strip().splitlines()[-1]


def test_each_registered_module_is_one_command() -> None:
    from xpnet.cli.parser import COMMAND_MODULES, commands

    found = commands()
    assert (
        list(found)
        == ["train", "evaluate", "predict", "info", "check", "export"]
        == list(COMMAND_MODULES)
    )
    for name, command in found.items():
        assert isinstance(command, xpnet.cli.Command)
        assert command.run.__module__ == f"xpnet.cli.{name}"


def test_a_new_command_needs_only_its_command_record(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import xpnet.cli.parser as cli_parser

    def add_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--times", type=xpnet.cli.arguments.positive_int, default=1)

    def run(args: argparse.Namespace) -> int:
        if args.times > 2:
            raise xpnet.cli.CommandError("too many")
        print("hello " * args.times)
        return 0

    hello = xpnet.cli.Command("hello", "say hello", "Say hello.", add_arguments, run)
    registered = cli_parser.commands
    monkeypatch.setattr(cli_parser, "commands", lambda: {**registered(), "hello": hello})
    assert main(["hello", "--times", "2"]) == 0
    assert capsys.readouterr().out.strip() == "hello hello"
    assert main(["hello", "--times", "0"]) == 2
    assert "--times: expected a positive integer" in capsys.readouterr().err
    assert main(["hello", "--times", "3"]) == 1
    assert _error_line(capsys.readouterr().err) == "xpnet: error: too many"
    assert main(["--help"]) == 0
    assert "say hello" in capsys.readouterr().out


# --------------------------------------------------------------------------- train
def test_train_digits_summary_json(trained: dict) -> None:
    s = trained["summary"]
    for key, kind in SUMMARY_TYPES.items():
        assert isinstance(s[key], kind), (key, s[key])
    assert s["dataset"] == "digits"
    assert (s["backend"], s["dtype"], s["optimizer"]) == ("numpy", "float32", "adam")
    assert (s["epochs"], s["batch_size"], s["lr"], s["seed"]) == (15, 32, 3e-3, 0)
    assert s["lr_schedule"] == "step"
    assert [layer["kind"] for layer in s["layers"]] == ["Dense", "ReLU", "Dropout", "Dense"]
    assert s["layers"][0]["config"]["in_features"] == 64
    assert s["layers"][-1]["config"]["out_features"] == 10
    rebuilt = xpnet.Sequential.from_config({"dtype": s["dtype"], "layers": s["layers"]})
    assert rebuilt.n_outputs == 10
    assert set(HISTORY_KEYS) <= set(s["history"])
    for key in HISTORY_KEYS:
        values = s["history"][key]
        assert len(values) == 15 and all(isinstance(v, float) for v in values), key
    assert s["history"]["loss"][-1] < s["history"]["loss"][0]
    # 1,797 samples: 20% test, then 10% of the rest for validation.
    assert s["n_test"] + s["n_val"] + s["n_train"] == 1797
    assert abs(s["n_test"] - 359) <= 5 and abs(s["n_val"] - 144) <= 5
    assert s["test_accuracy"] > 0.9
    cm = np.array(s["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == s["n_test"]
    assert np.trace(cm) / cm.sum() == pytest.approx(s["test_accuracy"])
    assert 0 < s["train_seconds"] < 60


def test_train_output_has_epochs_accuracy_and_confusion_matrix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert f" {key} " in epoch_lines[-1]
    assert epoch_lines[-1].endswith("s")
    assert "test accuracy" in out
    assert "true\\pred" in out  # the confusion matrix header


def test_quiet_prints_only_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("test accuracy")
    assert captured.err == ""


def test_same_seed_same_result(tmp_path: Path) -> None:
    results = []
    for name in ("a.json", "b.json"):
        argv = [*FAST, "--epochs", "3", "--seed", "7", "--quiet", "--json", str(tmp_path / name)]
        assert main(argv) == 0
        s = json.loads((tmp_path / name).read_text())
        results.append((s["history"]["loss"], s["test_loss"], s["confusion_matrix"]))
    assert results[0] == results[1]


def test_no_validation_split_gives_null_validation_history(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = [*FAST, "--epochs", "2", "--val-split", "0", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    assert s["n_val"] == 0 and s["history"]["val_accuracy"] == [None, None]
    assert len(s["history"]["accuracy"]) == 2


@pytest.mark.parametrize(
    ("extra", "layer_kinds", "optimizer"),
    [
        (
            ["--optimizer", "sgd", "--momentum", "0.8", "--activation", "tanh", "--dropout", "0"],
            ["Dense", "Tanh", "Dense"],
            {"momentum": 0.8, "lr": 0.05},
        ),
        (["--optimizer", "rmsprop", "--lr", "0.002"], None, {"lr": 0.002, "momentum": 0.0}),
        (["--optimizer", "adamw", "--dtype", "float64"], None, {"weight_decay": 0.01}),
        (["--hidden", "none"], ["Dense"], {}),
    ],
)
def test_train_options_reach_the_model(
    tmp_path: Path, extra: list[str], layer_kinds: list[str] | None, optimizer: dict
) -> None:
    out = tmp_path / "r.json"
    argv = [*DIGITS, "--epochs", "2", *extra, "--quiet", "--json", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    if layer_kinds is not None:
        assert [layer["kind"] for layer in s["layers"]] == layer_kinds
    for key, value in optimizer.items():
        assert s["optimizer_hyperparameters"][key] == pytest.approx(value)
    if "float64" in extra:
        assert s["dtype"] == "float64"


def test_train_on_array_api_strict_backend(tmp_path: Path) -> None:
    pytest.importorskip("array_api_strict")
    out = tmp_path / "r.json"
    before = xpnet.get_backend()
    argv = [*FAST, "--epochs", "2", "--backend", "array-api-strict", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["backend"] == "array_api_strict"
    assert xpnet.get_backend() == before  # in-process runs leave the caller's backend alone


def _write_csv(path: Path, n: int = 80, labelled: bool = True, seed: int = 0) -> np.ndarray:
    """A Kaggle-layout CSV whose class is readable from which image row is bright."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    X = rng.integers(0, 40, size=(n, 28, 28))
    for i, label in enumerate(y):
        X[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    X = X.reshape(n, 784)
    header = [f"pixel{j}" for j in range(784)]
    rows = X
    if labelled:
        header = ["label", *header]
        rows = np.column_stack([y, X])
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return X


def test_train_on_a_csv_file(tmp_path: Path) -> None:
    csv_file = tmp_path / "train.csv"
    _write_csv(csv_file)
    out = tmp_path / "r.json"
    argv = ["train", "--dataset", f"csv:{csv_file}", "--hidden", "32", "--epochs", "20"]
    argv += ["--batch-size", "8", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    assert s["dataset"] == f"csv:{csv_file}"
    assert s["n_test"] == 16 and s["layers"][0]["config"]["in_features"] == 784
    assert s["test_accuracy"] >= 0.75


# --------------------------------------------------------------------------- runtime errors
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "--dataset", "csv:{tmp}/missing.csv"], "missing.csv does not exist"),
        (
            ["train", "--dataset", "mnist", "--data-dir", "{tmp}", "--no-download"],
            "MNIST files not found",
        ),
        (["train", "--dataset", "csv:{tmp}/unlabelled.csv"], "has no 'label' column"),
        (["train", "--dataset", "csv:{tmp}/bad.csv"], "wrong column count"),
        (["train", "--json", "{tmp}/no/such/dir/r.json"], "does not exist"),
        (["evaluate", "{tmp}/missing.xpnet"], "missing.xpnet does not exist"),
        (["evaluate", "{tmp}/bad.csv"], "not a valid xpnet checkpoint"),
        (["predict", "{tmp}/bad.csv", "{tmp}/x.npy"], "not a valid xpnet checkpoint"),
    ],
)
def test_runtime_failures_exit_1_with_one_line(
    tmp_path: Path, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_csv(tmp_path / "unlabelled.csv", n=12, labelled=False)
    (tmp_path / "bad.csv").write_text("label,a,b\n1,2,3\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert fragment in _error_line(captured.err)
    assert "Traceback" not in captured.err


def test_cupy_backend_missing_is_a_runtime_error(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        xpnet.backend.resolve_backend("cupy")
        pytest.skip("CuPy and a CUDA device are available here")
    except xpnet.BackendUnavailableError:
        pass
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--backend", "cupy"]) == 1
    assert "cupy" in _error_line(capsys.readouterr().err).lower()


def test_debug_raises_instead_of_one_line(tmp_path: Path) -> None:
    with pytest.raises(xpnet.XpnetError, match="does not exist"):
        main(["train", "--dataset", f"csv:{tmp_path}/missing.csv", "--debug"])


# --------------------------------------------------------------------------- evaluate / predict
def test_evaluate_reproduces_the_training_test_accuracy(
    trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained["dir"] / "eval.json"
    assert main(["evaluate", str(trained["model"]), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert scores["dataset"] == "digits"  # chosen from the model's 64 inputs
    assert scores["test_accuracy"] == trained["summary"]["test_accuracy"]
    assert scores["confusion_matrix"] == trained["summary"]["confusion_matrix"]
    assert f"test accuracy {scores['test_accuracy']:.2%}" in printed
    assert "true\\pred" in printed


def test_evaluate_on_the_wrong_data_set_is_a_clear_error(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "t.csv"
    _write_csv(csv_file, n=20)
    assert main(["evaluate", str(trained["model"]), "--dataset", f"csv:{csv_file}"]) == 1
    assert "takes 64 inputs" in _error_line(capsys.readouterr().err)


def _predictions(stdout: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split("\t") for line in stdout.strip().splitlines()]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    return np.array([int(r[1]) for r in rows]), np.array([float(r[2]) for r in rows])


def test_predict_npy_matches_the_model(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X_raw, _ = _raw_digits_test_split()
    model = xpnet.load_model(trained["model"])
    expected = model.predict((X_raw / 16).astype(np.float32))
    for name, array in (
        ("flat.npy", X_raw[:30]),
        ("images.npy", X_raw[:30].reshape(30, 8, 8).astype(np.uint8)),
    ):
        np.save(tmp_path / name, array)
        assert main(["predict", str(trained["model"]), str(tmp_path / name)]) == 0
        labels, probs = _predictions(capsys.readouterr().out)
        np.testing.assert_array_equal(labels, expected[:30])
        assert np.all((probs > 0.1) & (probs <= 1.0))
    np.save(tmp_path / "one.npy", X_raw[3].reshape(8, 8))
    assert main(["predict", str(trained["model"]), str(tmp_path / "one.npy")]) == 0
    labels, _ = _predictions(capsys.readouterr().out)
    assert labels.tolist() == [expected[3]]


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((2, 10)), "expected images of shape (n, 64)"),
        (np.full((1, 64), 0.5), "values all lie in [0, 1]"),
        (np.full((1, 64), 40.0), "expected pixel values in [0, 16]"),
        (np.array(["a"] * 64).reshape(1, 64), "numeric"),
    ],
)
def test_predict_rejects_bad_arrays(
    trained: dict,
    tmp_path: Path,
    array: np.ndarray,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    np.save(tmp_path / "x.npy", array)
    assert main(["predict", str(trained["model"]), str(tmp_path / "x.npy")]) == 1
    assert fragment in _error_line(capsys.readouterr().err)


def test_predict_refuses_pickled_npy(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["predict", str(trained["model"]), str(tmp_path / "obj.npy")]) == 1
    assert "not a readable .npy array" in _error_line(capsys.readouterr().err)


def test_predict_png_dark_on_light_is_inverted_and_resized(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image = pytest.importorskip("PIL.Image")
    X_raw, _ = _raw_digits_test_split()
    model = xpnet.load_model(trained["model"])
    proba = model.predict_proba((X_raw / 16).astype(np.float32))
    # Images the model is sure of, so resampling noise cannot flip the answer.
    sure = np.flatnonzero(proba.max(axis=1) > 0.95)[:5]
    assert sure.size == 5
    for i in sure:
        pixels = (X_raw[i].reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
        drawing = np.kron(255 - pixels, np.ones((6, 6), dtype=np.uint8))  # 48x48, dark ink
        Image.fromarray(drawing, mode="L").convert("RGB").save(tmp_path / "digit.png")
        assert main(["predict", str(trained["model"]), str(tmp_path / "digit.png")]) == 0
        labels, _ = _predictions(capsys.readouterr().out)
        assert labels.tolist() == [int(np.argmax(proba[i]))]


def test_predict_unreadable_image(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("PIL")
    (tmp_path / "x.png").write_bytes(b"not a png at all")
    assert main(["predict", str(trained["model"]), str(tmp_path / "x.png")]) == 1
    assert "not a readable image" in _error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_and_resume_continue_training(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    # Constant rate: the step schedule follows --epochs, which this test changes between runs.
    base = [*FAST, "--lr-schedule", "constant", "--checkpoint", str(ckpt), "--quiet"]
    assert main([*base, "--epochs", "4", "--json", str(tmp_path / "full.json")]) == 0
    full = json.loads((tmp_path / "full.json").read_text())

    ckpt2 = tmp_path / "ckpt2"
    part = [*FAST, "--lr-schedule", "constant", "--checkpoint", str(ckpt2), "--quiet"]
    assert main([*part, "--epochs", "2"]) == 0
    assert any(ckpt2.iterdir())
    assert main([*part, "--epochs", "4", "--resume", "--json", str(tmp_path / "res.json")]) == 0
    resumed = json.loads((tmp_path / "res.json").read_text())
    # Two epochs then two more reach the same weights as four in one go.
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], rel=1e-5)
    assert resumed["history"]["loss"][-2:] == pytest.approx(full["history"]["loss"][-2:], rel=1e-5)


def test_step_schedule_drops_the_rate_and_survives_resume(tmp_path: Path) -> None:
    from xpnet.cli import STEP_FACTOR, build_model, decay_epoch, load_dataset
    from xpnet.recipe import make_optimizer

    data = load_dataset(xpnet.cli.DatasetSpec("digits"), None, False)
    X, y = data.X_train, data.y_train
    per_epoch = -(-X.shape[0] // 64)
    assert [decay_epoch(e) for e in (1, 2, 4, 10, 14)] == [1, 1, 3, 7, 10]

    def run(epochs: int, **fit_kwargs: object) -> tuple[list[float], list[np.ndarray], object]:
        model = build_model(64, 10, (32,), "relu", 0.1, "float32", seed=3)
        opt = make_optimizer("adam", 1e-2, None, "step", 4, per_epoch)
        h = model.fit(X, y, epochs=epochs, batch_size=64, optimizer=opt, **fit_kwargs)
        return h.history["loss"], model.get_weights(), opt

    _, _, opt = run(3)
    assert opt.steps_done == 3 * per_epoch and opt.lr == pytest.approx(1e-2)  # epochs 1-3
    loss_full, w_full, opt = run(4)
    assert opt.lr == pytest.approx(1e-2 * STEP_FACTOR)  # epoch 4 of 4
    assert opt.hyperparameters()["lr"] == 1e-2  # what checkpoints record and compare
    # Two epochs of the four-epoch schedule, checkpointed, then resumed to the end.
    run(2, checkpoint=tmp_path / "c")
    loss_resumed, w_resumed, opt2 = run(4, checkpoint=tmp_path / "c", resume=True)
    assert opt2.steps_done == 4 * per_epoch
    assert loss_resumed == loss_full
    for a, b in zip(w_resumed, w_full, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- as a program
def test_subprocess_success_and_exit_codes(tmp_path: Path) -> None:
    ok = run_cli("train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("test accuracy")

    usage = run_cli("train", "--epochs", "-3")
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: xpnet train")

    missing = str(tmp_path / "missing.csv")
    failed = run_cli("train", "--dataset", f"csv:{missing}")
    assert failed.returncode == 1
    assert _error_line(failed.stderr) == f"xpnet: error: CSV file {missing} does not exist"

    debug = run_cli("train", "--dataset", f"csv:{missing}", "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "DataError" in debug.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_subprocess_interrupt_exits_130() -> None:
    argv = ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpnet", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # wait until training has started
            if line.startswith("epoch ") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


# --------------------------------------------------------------------------- closed pipes
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and shells")
def test_evaluate_into_a_pipe_closed_before_it_writes_ends_quietly(trained: dict) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpnet", "evaluate", str(trained["model"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line: every write fails
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == xpnet.cli.EXIT_BROKEN_PIPE
    assert err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and shells")
def test_predict_piped_into_head_ends_quietly(trained: dict, tmp_path: Path) -> None:
    X_raw, _ = _raw_digits_test_split()
    # About 300 kB of output: far more than a pipe buffers, so xpnet is still writing when
    # head exits after three lines.
    many = np.tile(X_raw, (60, 1)).astype(np.uint8)
    np.save(tmp_path / "many.npy", many)
    xpnet_argv = [sys.executable, "-m", "xpnet", "predict", trained["model"], tmp_path / "many.npy"]
    script = f"set -o pipefail; {' '.join(shlex.quote(str(a)) for a in xpnet_argv)} | head -3"
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT
    )
    assert result.stderr == ""
    labels, _ = _predictions(result.stdout)
    assert labels.size == 3
    assert result.returncode == xpnet.cli.EXIT_BROKEN_PIPE  # xpnet's status, via pipefail


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_train_norm_label_smoothing_clip_norm(norm: str, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    argv = [*DIGITS[:-1], "3", "--norm", norm, "--activation", "gelu", "--label-smoothing"]
    argv += ["0.1", "--clip-norm", "2.0", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    s = json.loads(out.read_text())
    assert (s["norm"], s["label_smoothing"], s["clip_norm"]) == (norm, 0.1, 2.0)
    assert s["optimizer_hyperparameters"]["clip_norm"] == 2.0
    kinds = [layer["kind"] for layer in s["layers"]]
    want = "BatchNorm" if norm == "batch" else "LayerNorm"
    assert kinds[:3] == ["Dense", want, "GELU"]  # after the Dense, before the activation
    assert s["test_accuracy"] > 0.5
