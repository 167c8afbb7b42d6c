"""Sequential.get_config / from_config: the one description of an architecture."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet.io import codec
from xpnet.layers import (
    LAYER_TYPES,
    Dense,
    Dropout,
    Layer,
    LeakyReLU,
    ReLU,
    Softmax,
    Tanh,
    register_layer,
)


def make_model(**kw) -> xpnet.Sequential:
    return xpnet.Sequential(
        [
            Dense(5, 8, activation="relu", init="glorot_normal"),
            LeakyReLU(0.2),
            Dropout(0.25),
            Dense(8, 4),
            Tanh(),
            Dense(4, 3),
            Softmax(),
        ],
        **kw,
    )


def test_get_config_is_json_and_rebuilds_the_same_architecture(backend):
    model = make_model(dtype="float64", seed=0)
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["dtype"] == "float64"
    assert config["layers"][2] == {"kind": "Dropout", "config": {"p": 0.25}}
    again = xpnet.Sequential.from_config(config)
    assert again.get_config() == config
    assert again.backend == backend
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in model.layers]
    assert again._built == 0  # unbuilt: weights are drawn on first use, as for a new model


def test_from_config_backend_and_seed():
    config = make_model().get_config()
    a = xpnet.Sequential.from_config(config, backend="numpy", seed=3)
    b = xpnet.Sequential.from_config(config, backend="numpy", seed=3)
    assert a.backend.name == "numpy" and a.seed == 3
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        assert x.tobytes() == y.tobytes()


def test_get_config_returns_a_copy():
    model = make_model()
    config = model.get_config()
    config["layers"][0]["config"]["out_features"] = 99
    assert model.layers[0].out_features == 8


def test_checkpoint_records_the_config(tmp_path):
    model = make_model(seed=1)
    model.save(tmp_path / "m")
    meta, _ = ckpt.read_checkpoint(tmp_path / "m")
    assert {"dtype": meta["dtype"], "layers": meta["layers"]} == model.get_config()
    assert ckpt.architecture(model) == model.get_config()["layers"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "a dict with keys 'dtype' and 'layers', got list"),
        ({"layers": []}, r"keys 'dtype' and 'layers', got \['layers'\]"),
        ({"dtype": "float32", "layers": {}}, "'layers' must be a list"),
        ({"dtype": "float32", "layers": [("Dense", {})]}, "layer 0 .* keys 'kind' and 'config'"),
        ({"dtype": "float32", "layers": [{"kind": 1, "config": {}}]}, "malformed"),
        ({"dtype": "float32", "layers": [{"kind": "Conv", "config": {}}]}, "unknown layer type"),
        (
            {"dtype": "float32", "layers": [{"kind": "ReLU", "config": {"x": 1}}]},
            r"layer 0 \(ReLU\)",
        ),
        (
            {
                "dtype": "float32",
                "layers": [
                    {"kind": "Dense", "config": {"in_features": 2, "out_features": 3}},
                    {"kind": "Dense", "config": {"in_features": 4, "out_features": 1}},
                ],
            },
            "expects 4 inputs",
        ),
        ({"dtype": "int8", "layers": []}, "dtype must be one of"),
    ],
)
def test_from_config_refuses_bad_configs(config, message):
    with pytest.raises(ValueError, match=message):
        xpnet.Sequential.from_config(config)


class _Unregistered(ReLU):
    kind = "TestUnregistered"


def test_get_config_refuses_unregistered_layers(tmp_path):
    model = xpnet.Sequential([Dense(2, 2), _Unregistered()])
    with pytest.raises(ValueError, match="not a registered layer type"):
        model.get_config()
    with pytest.raises(ValueError, match="not a registered layer type"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_register_layer():
    class Twice(Layer):
        kind = "TestTwice"

        def forward(self, x, training=False):
            return 2 * x

        def backward(self, grad, need_input_grad=True):
            return 2 * grad

    try:
        assert register_layer(Twice) is Twice
        assert register_layer(Twice) is Twice  # registering again is harmless
        model = xpnet.Sequential([Dense(2, 2), Twice()], seed=0)
        again = xpnet.Sequential.from_config(model.get_config())
        assert isinstance(again.layers[1], Twice)

        class Other(Twice):
            pass

        with pytest.raises(ValueError, match="already registered to"):
            register_layer(Other)
    finally:
        LAYER_TYPES.pop("TestTwice", None)
    with pytest.raises(TypeError, match="expects a Layer subclass"):
        register_layer(int)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="expects a Layer subclass"):
        register_layer(ReLU())  # type: ignore[type-var]


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_sklearn_pickle_uses_the_config():
    pytest.importorskip("sklearn")
    from xpnet.sklearn import MLPClassifier, _model_from_plain, _model_to_plain

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    state = clf.__getstate__()
    assert state["_model_plain"]["config"] == clf.model_.get_config()
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    # A pickle of xpnet 0.1.0 held (kind, config) pairs and the dtype instead of the config.
    plain = _model_to_plain(clf.model_)
    config = plain.pop("config")
    plain.pop("buffers")
    plain["layers"] = [(e["kind"], e["config"]) for e in config["layers"]]
    plain["dtype"] = config["dtype"]
    old = _model_from_plain(plain)
    assert old.get_config() == config


def test_codec_errors_are_value_errors_without_a_path(tmp_path):
    with pytest.raises(codec.CodecError, match="pickle"):
        codec.decode(pickle.dumps({"a": 1}))
    assert issubclass(codec.CodecError, ValueError)
    with pytest.raises(codec.CodecError, match="empty"):
        codec.sniff(b"")
    # The reader adds the file name to the codec's reason.
    (tmp_path / "bad").write_bytes(b"\x00" * 16)
    with pytest.raises(xpnet.CheckpointError, match=r"bad is not a valid xpnet checkpoint"):
        ckpt.read_checkpoint(tmp_path / "bad")
