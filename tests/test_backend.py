"""Backend selection, conversion to NumPy, and the refusal to mix backends in one call."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.backend import BACKEND_NAMES, backend_of, namespace_of
from xpnet.layers import Dense, ReLU
from xpnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from xpnet.optimizers import SGD, Adam
from xpnet.parameter import Parameter

ROOT = Path(__file__).resolve().parents[1]
MIXED = "different backends"


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "XPNET_BACKEND"}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------- selection
def test_set_and_get_backend():
    b = xpnet.set_backend("array_api_strict")
    assert isinstance(b, xpnet.Backend)
    assert b.name == "array_api_strict"
    assert xpnet.get_backend() is b
    assert xpnet.set_backend("numpy").name == "numpy"
    assert xpnet.get_backend().name == "numpy"


def test_backend_names_are_normalised():
    assert xpnet.set_backend("Array-API-Strict").name == "array_api_strict"
    assert xpnet.set_backend("  NumPy ").name == "numpy"
    # A Backend object is accepted as well as a name.
    b = xpnet.get_backend()
    assert xpnet.set_backend(b) is b


def test_use_backend_nests_and_restores():
    xpnet.set_backend("numpy")
    with xpnet.use_backend("array_api_strict") as outer:
        assert outer.name == "array_api_strict"
        assert xpnet.get_backend() is outer
        with xpnet.use_backend("numpy") as inner:
            assert inner.name == "numpy"
            assert xpnet.get_backend() is inner
        assert xpnet.get_backend() is outer
    assert xpnet.get_backend().name == "numpy"


def test_use_backend_restores_after_an_exception():
    xpnet.set_backend("numpy")
    with pytest.raises(KeyError), xpnet.use_backend("array_api_strict"):
        raise KeyError("boom")
    assert xpnet.get_backend().name == "numpy"


def test_set_backend_inside_use_backend_is_scoped_to_the_block():
    xpnet.set_backend("numpy")
    with xpnet.use_backend("numpy"):
        xpnet.set_backend("array_api_strict")
        assert xpnet.get_backend().name == "array_api_strict"
    assert xpnet.get_backend().name == "numpy"


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'torch'") as info:
        xpnet.set_backend("torch")
    for name in BACKEND_NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="valid backends"), xpnet.use_backend("jax"):
        pass


def test_backend_name_must_be_a_string():
    with pytest.raises(TypeError, match="must be a name"):
        xpnet.set_backend(3)


def test_failed_switch_keeps_the_active_backend():
    xpnet.set_backend("array_api_strict")
    with pytest.raises(ValueError):
        xpnet.set_backend("nope")
    assert xpnet.get_backend().name == "array_api_strict"


@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="CuPy is installed; the hint is moot"
)
def test_missing_cupy_says_how_to_install_it():
    with pytest.raises(xpnet.BackendUnavailableError) as info:
        xpnet.set_backend("cupy")
    assert "xpnet[cuda12]" in str(info.value)
    # Callers catching the builtin type keep working.
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, xpnet.XpnetError)
    assert xpnet.get_backend().name != "cupy"


def test_default_backend_is_numpy_without_the_env_var():
    proc = _run_python("import xpnet; print(xpnet.get_backend().name)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numpy"


def test_xpnet_backend_env_var_sets_the_default():
    code = (
        "import xpnet\n"
        "from xpnet import Sequential\n"
        "from xpnet.layers import Dense\n"
        "m = Sequential([Dense(2, 3)], seed=0)\n"
        "print(xpnet.get_backend().name, type(m.parameters()[0].data).__module__)\n"
    )
    proc = _run_python(code, XPNET_BACKEND="array_api_strict")
    assert proc.returncode == 0, proc.stderr
    name, module = proc.stdout.split()
    assert name == "array_api_strict"
    assert module.startswith("array_api_strict")


def test_bad_xpnet_backend_env_var_is_a_clear_error():
    proc = _run_python("import xpnet; xpnet.get_backend()", XPNET_BACKEND="tensorflow")
    assert proc.returncode != 0
    assert "ValueError" in proc.stderr
    assert "unknown backend 'tensorflow'" in proc.stderr


# --------------------------------------------------------------------------- arrays
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_to_numpy_on_each_backend(backend, dtype):
    host = np.arange(6).reshape(2, 3).astype(dtype)
    a = backend.asarray(host, dtype=dtype)
    assert backend_of(a).name == backend.name
    out = xpnet.to_numpy(a)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, host)


def test_to_numpy_of_0d_results(backend):
    s = backend.xp.sum(backend.asarray([1.5, 2.5]))
    out = xpnet.to_numpy(s)
    assert out.shape == ()
    assert float(out) == 4.0


def test_to_numpy_passes_host_values_through():
    a = np.ones(3)
    assert xpnet.to_numpy(a) is a
    np.testing.assert_array_equal(xpnet.to_numpy([1, 2]), [1, 2])
    assert xpnet.to_numpy(2.5).shape == ()
    with pytest.raises(TypeError, match="expected an array"):
        xpnet.to_numpy("not an array")


def test_asarray_refuses_another_device_backend():
    strict = xpnet.set_backend("array_api_strict")
    numpy_b = xpnet.set_backend("numpy")
    a = strict.asarray(np.ones(3))  # host data is welcome anywhere
    with pytest.raises(TypeError, match="to_numpy"):
        numpy_b.asarray(a)


def test_namespace_of_names_both_backends():
    strict = xpnet.set_backend("array_api_strict")
    with pytest.raises(TypeError, match=MIXED) as info:
        namespace_of(np.ones(2), strict.asarray([1.0, 2.0]))
    assert "numpy" in str(info.value)
    assert "array_api_strict" in str(info.value)


def test_resolve_backend_is_public_and_shares_one_object_per_backend():
    b = xpnet.backend.resolve_backend("NumPy")
    assert b is xpnet.backend.resolve_backend("numpy") is xpnet.backend.resolve_backend(b)
    assert xpnet.backend._resolve is xpnet.backend.resolve_backend  # the old private name
    with pytest.raises(ValueError, match="unknown backend 'jax'; valid backends are"):
        xpnet.backend.resolve_backend("jax")
    with pytest.raises(TypeError, match="backend must be a name"):
        xpnet.backend.resolve_backend(3)


def test_backend_of_is_the_one_lookup_and_is_cached_by_type(backend):
    a = backend.asarray(np.ones((2, 3)))
    assert backend_of(a) is backend
    assert backend_of(a, None, a[0, ...]) is backend  # None entries are skipped
    assert namespace_of(a) is backend.xp
    assert xpnet.backend._backend_by_type[type(a)] is backend
    with pytest.raises(TypeError, match="known backend, got list"):
        backend_of([1.0, 2.0])
    with pytest.raises(TypeError, match="at least one array"):
        backend_of(None)


def test_backend_labels_read_as_one_parenthesis(backend):
    assert backend.label == f"{backend.name} (cpu)"
    made = xpnet.Backend("cupy", backend.xp, None, "cuda:0 (NVIDIA H200)", "cuda:0, NVIDIA H200")
    assert made.label == "cupy (cuda:0, NVIDIA H200)"
    assert xpnet.Backend("numpy", backend.xp, None, "cpu (NumPy)").label == "numpy (cpu (NumPy))"


def test_layers_keep_the_backend_they_were_built_on(backend):
    model = xpnet.Sequential([Dense(3, 4), ReLU(), Dense(4, 2)], seed=0, backend=backend)
    model.parameters()  # builds
    assert all(layer.backend is backend for layer in model.layers)
    other = "numpy" if backend.name != "numpy" else "array_api_strict"
    model.to(other)
    assert all(layer.backend.name == other for layer in model.layers)
    assert model.predict_proba(np.ones((2, 3))).shape == (2, 2)


def test_tf32_active_reads_cupy_tf32_as_cupy_does(monkeypatch):
    # CuPy enables TF32 for int(CUPY_TF32) > 0; comparing with "1" missed "2" or " 1".
    from xpnet.testing import tf32_active

    cupy_like = xpnet.Backend("cupy", namespace_of(np.ones(1)), None, "cuda:0 (test)")
    for value, expected in (("1", True), ("2", True), (" 1", True), ("0", False), ("", False)):
        monkeypatch.setenv("CUPY_TF32", value)
        assert tf32_active(cupy_like) is expected, value
    monkeypatch.setenv("CUPY_TF32", "yes")  # CuPy refuses it at import: not on
    assert tf32_active(cupy_like) is False
    monkeypatch.setenv("CUPY_TF32", "1")
    assert tf32_active("numpy") is False


def test_a_model_stays_on_the_backend_it_was_built_on():
    with xpnet.use_backend("array_api_strict"):
        model = xpnet.Sequential([Dense(3, 2)], seed=0)
    assert xpnet.get_backend().name == "numpy"
    assert backend_of(model.parameters()[0].data).name == "array_api_strict"
    out = model.predict(np.ones((4, 3)))
    assert isinstance(out, np.ndarray)


# --------------------------------------------------------------------------- no mixing
def _strict():
    return xpnet.set_backend("array_api_strict")


def test_mixing_backends_in_a_layer_forward_is_a_type_error():
    layer = Dense(3, 2)
    layer.build(xpnet.set_backend("numpy"), "float64", np.random.default_rng(0))
    x = _strict().asarray(np.ones((4, 3)))
    with pytest.raises(TypeError, match=MIXED):
        layer.forward(x)


def test_mixing_backends_in_a_model_forward_is_a_type_error():
    model = xpnet.Sequential([Dense(3, 4), ReLU(), Dense(4, 2)], seed=0, backend="numpy")
    x = _strict().asarray(np.ones((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match=MIXED):
        model.forward(x)


def test_mixing_backends_in_a_loss_forward_is_a_type_error():
    logits = np.zeros((3, 4))
    labels = _strict().asarray(np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=MIXED):
        SoftmaxCrossEntropy().forward(logits, labels)
    with pytest.raises(TypeError, match=MIXED):
        MeanSquaredError().forward(logits, _strict().asarray(np.zeros((3, 4))))


@pytest.mark.parametrize("opt", [SGD(lr=0.1), SGD(lr=0.1, momentum=0.9), Adam()], ids=repr)
def test_mixing_backends_in_an_optimizer_step_is_a_type_error(opt):
    p = Parameter(np.ones(3), "W")
    p.grad = _strict().asarray(np.ones(3))
    with pytest.raises(TypeError, match=MIXED):
        opt.step([p])
    np.testing.assert_array_equal(p.data, np.ones(3))


def test_to_numpy_copies_non_numpy_arrays(backend):
    a = backend.asarray(np.zeros(3))
    host = xpnet.to_numpy(a)
    host[0] = 5.0
    expected = 5.0 if backend.name == "numpy" else 0.0  # NumPy input comes back as itself
    assert float(xpnet.to_numpy(a)[0]) == expected


def test_unavailable_reason_names_the_problem_or_none() -> None:
    from xpnet.backend import unavailable_reason

    assert unavailable_reason("numpy") is None
    try:
        xpnet.set_backend("cupy")
    except xpnet.BackendUnavailableError as exc:
        assert unavailable_reason("cupy") == str(exc)
    else:
        assert unavailable_reason("cupy") is None
    finally:
        xpnet.set_backend("numpy")
