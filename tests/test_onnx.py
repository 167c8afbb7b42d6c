"""ONNX export: every layer kind through onnxruntime against xpnet, the graph contract, the
errors, and ``xpnet export``. Skipped where onnx or onnxruntime is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.cli import main
from xpnet.layers import (
    GELU,
    LAYER_TYPES,
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xpnet.onnx import CONVERTERS, DEFAULT_OPSET, MIN_OPSET, export  # noqa: E402

N_IN = 6

# Each case is a model exercising one layer kind (or one Dense activation shorthand).
CASES = {
    "Dense": lambda: [Dense(N_IN, 4)],
    "Dense-relu": lambda: [Dense(N_IN, 4, activation="relu")],
    "Dense-leaky_relu": lambda: [Dense(N_IN, 4, activation="leaky_relu")],
    "Dense-sigmoid": lambda: [Dense(N_IN, 4, activation="sigmoid")],
    "Dense-tanh": lambda: [Dense(N_IN, 4, activation="tanh")],
    "Dense-softmax": lambda: [Dense(N_IN, 4, activation="softmax")],
    "ReLU": lambda: [Dense(N_IN, 5), ReLU(), Dense(5, 3)],
    "LeakyReLU": lambda: [Dense(N_IN, 5), LeakyReLU(0.2), Dense(5, 3)],
    "Sigmoid": lambda: [Dense(N_IN, 5), Sigmoid()],
    "Tanh": lambda: [Dense(N_IN, 5), Tanh()],
    "Softmax": lambda: [Dense(N_IN, 5), Softmax()],
    "Dropout": lambda: [Dense(N_IN, 5, activation="relu"), Dropout(0.5), Dense(5, 3)],
    "Dense-gelu": lambda: [Dense(N_IN, 4, activation="gelu")],
    "Dense-gelu_tanh": lambda: [Dense(N_IN, 4, activation="gelu_tanh")],
    "Dense-silu": lambda: [Dense(N_IN, 4, activation="silu")],
    "GELU": lambda: [Dense(N_IN, 5), GELU(), Dense(5, 3)],
    "GELU-tanh": lambda: [Dense(N_IN, 5), GELU(approximate="tanh")],
    "SiLU": lambda: [Dense(N_IN, 5), SiLU()],
    "BatchNorm": lambda: [Dense(N_IN, 5), BatchNorm(5), ReLU(), Dense(5, 3)],
    "LayerNorm": lambda: [Dense(N_IN, 5), LayerNorm(5, eps=1e-3), Dense(5, 3)],
}

# float32: 1e-5 relative; entries that cancel to almost zero are compared at 1e-5 of the
# output's scale, since the two libraries sum the products in different orders.
RTOL = {"float32": 1e-5, "float64": 1e-12}


def _inputs(n: int, dtype: str, seed: int = 0) -> np.ndarray:
    return (2.0 * np.random.default_rng(seed).standard_normal((n, N_IN))).astype(dtype)


def _run(path: Path, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["output"], {"input": X})
    return out


def _forward(model: xpnet.Sequential, X: np.ndarray) -> np.ndarray:
    return xpnet.to_numpy(model.forward(model.backend.asarray(X), training=False))


def _assert_matches(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def test_the_cases_cover_every_layer_kind():
    kinds = {type(layer).kind for build in CASES.values() for layer in build()}
    assert kinds == set(LAYER_TYPES)
    assert set(LAYER_TYPES) <= set(CONVERTERS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_layer_kind_matches_onnxruntime(case, dtype, tmp_path):
    model = xpnet.Sequential(CASES[case](), dtype=dtype, seed=1, backend="numpy")
    path = export(model, tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    # One session serves both batch sizes: the batch dimension is dynamic.
    for n in (1, 357):
        X = _inputs(n, dtype, seed=n)
        _assert_matches(_run(path, X), _forward(model, X), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_exports_its_running_statistics(dtype, tmp_path):
    model = xpnet.Sequential(CASES["BatchNorm"](), dtype=dtype, seed=2, backend="numpy")
    X = _inputs(64, dtype, seed=3) * 3.0 + 1.0
    model.fit(X, np.arange(64) % 3, epochs=2, batch_size=16)
    assert np.abs(xpnet.to_numpy(model.layers[1].running_mean)).max() > 0.05
    path = export(model, tmp_path / "bn.onnx")
    _assert_matches(_run(path, X), _forward(model, X), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_over_the_whole_real_line(dtype, tmp_path):
    # Dense(1, 1) with W = 1, b = 0 passes x through: the GELU sees the tails and every branch
    # of the float64 erfc written out in operators.
    model = xpnet.Sequential([Dense(1, 1), GELU()], dtype=dtype, seed=0, backend="numpy")
    model.set_weights([np.ones((1, 1)), np.zeros(1)])
    x = np.concatenate([np.linspace(-40.0, 40.0, 4001), [0.0, 0.3, -0.46875, 4.0, -26.6]])
    X = x.reshape(-1, 1).astype(dtype)
    got, want = _run(export(model, tmp_path / "gelu.onnx"), X), _forward(model, X)
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_graph_contract(dtype, tmp_path):
    model = xpnet.Sequential(
        [Dense(N_IN, 8, activation="tanh"), Dropout(0.2), Dense(8, 3), Softmax()],
        dtype=dtype,
        seed=0,
    )
    proto = onnx.load(str(export(model, tmp_path / "m.onnx")))
    elem = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert (inp.name, out.name) == ("input", "output")
    for value, width in ((inp, N_IN), (out, 3)):
        t = value.type.tensor_type
        assert t.elem_type == elem
        batch, features = t.shape.dim
        assert batch.dim_param == "N" and not batch.HasField("dim_value")
        assert features.dim_value == width
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    assert proto.producer_name == "xpnet"
    # Dropout adds no operator; the weights are initializers named after their layer.
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Tanh", "Gemm", "Softmax"]
    assert {i.name for i in proto.graph.initializer} == {
        "layers.0.W",
        "layers.0.b",
        "layers.2.W",
        "layers.2.b",
    }


def test_a_model_of_only_dropout_is_the_identity(tmp_path):
    path = export(xpnet.Sequential([Dropout(0.3)]), tmp_path / "d.onnx")
    X = _inputs(4, "float32")
    np.testing.assert_array_equal(_run(path, X), X)


def test_a_model_on_any_backend_exports_its_weights(backend, tmp_path):
    model = xpnet.Sequential(
        [Dense(N_IN, 7, activation="leaky_relu"), Dense(7, 3)], seed=3, backend=backend
    )
    path = export(model, tmp_path / "m.onnx")
    X = _inputs(50, "float32")
    _assert_matches(_run(path, X), _forward(model, X), "float32")


def test_an_unused_model_gets_its_weights_first(tmp_path):
    model = xpnet.Sequential([Dense(N_IN, 3)], seed=0)
    path = export(model, tmp_path / "m.onnx")  # before any forward
    X = _inputs(5, "float32")
    _assert_matches(_run(path, X), _forward(model, X), "float32")


@pytest.mark.parametrize("opset", [MIN_OPSET, 18, 21])
def test_opsets(opset, tmp_path):
    model = xpnet.Sequential([Dense(N_IN, 4, activation="softmax")], seed=0)
    proto = onnx.load(str(export(model, tmp_path / "m.onnx", opset=opset)))
    assert proto.opset_import[0].version == opset
    X = _inputs(9, "float32")
    _assert_matches(_run(tmp_path / "m.onnx", X), _forward(model, X), "float32")


class _Custom(Layer):
    kind = "Custom"

    def forward(self, x, training=False):
        return x


@pytest.mark.parametrize(
    ("layers", "opset", "match"),
    [
        ([], None, "no layers"),
        ([Dense(N_IN, 3), _Custom()], None, r"layer 1 \(Custom\) has no ONNX form.*Dense"),
        ([Dense(N_IN, 3)], MIN_OPSET - 1, f"opset must be between {MIN_OPSET} and"),
        ([Dense(N_IN, 3)], 10_000, "opset must be between"),
        ([Dense(N_IN, 3)], "17", "opset must be an integer"),
        ([Dense(N_IN, 3)], True, "opset must be an integer"),
    ],
)
def test_unexportable_raises_and_keeps_the_old_file(layers, opset, match, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match=match):
        export(xpnet.Sequential(layers), target, opset=opset)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_bad_arguments(tmp_path):
    model = xpnet.Sequential([Dense(N_IN, 3)])
    with pytest.raises(TypeError, match="Sequential model, got list"):
        export([Dense(N_IN, 3)], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="path must be a str"):
        export(model, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(model, tmp_path / "missing" / "m.onnx")


def test_without_onnx_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ImportError, match=r"pip install 'xpnet\[onnx\]'"):
        export(xpnet.Sequential([Dense(N_IN, 3)]), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# --------------------------------------------------------------------------- xpnet export
@pytest.fixture
def saved(tmp_path) -> Path:
    model = xpnet.Sequential([Dense(N_IN, 5, activation="relu"), Dense(5, 3)], seed=0)
    return model.save(tmp_path / "model.xpnet")


def test_cli_export(saved, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(saved), str(out), "--opset", "18"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"wrote {out} (ONNX opset 18, float32, input [N, {N_IN}] -> output [N, 3])"
    model = xpnet.load_model(saved)
    X = _inputs(20, "float32")
    _assert_matches(_run(out, X), _forward(model, X), "float32")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/nope.xpnet", "{tmp}/m.onnx"], "model file {tmp}/nope.xpnet does not exist"),
        (["{saved}", "{tmp}/no/m.onnx"], "directory '{tmp}/no' does not exist"),
        (["{saved}", "{tmp}/m.onnx", "--opset", "7"], "opset must be between 13 and"),
        (["{saved}", "{saved}"], "OUT must not be the model file itself"),
    ],
)
def test_cli_export_failures_exit_1_with_one_line(saved, tmp_path, capsys, argv, message):
    fill = {"tmp": tmp_path, "saved": saved}
    before = saved.read_bytes()
    assert main(["export", *(a.format(**fill) for a in argv)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xpnet: error: ")
    assert message.format(**fill) in err
    assert saved.read_bytes() == before


@pytest.mark.parametrize("argv", [[], ["m.xpnet"], ["m.xpnet", "m.onnx", "--opset", "x"]])
def test_cli_export_bad_usage_exits_2(argv, capsys):
    assert main(["export", *argv]) == 2
    assert "usage: xpnet export" in capsys.readouterr().err
