"""The small graph builder the layer converters write into.

It wraps the ``onnx`` package's helper API so that a converter names what it computes
(``graph.node("Relu", [x])``) and never deals with tensor names, dtypes or protobuf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Nodes and initializers of one exported graph, in the model's dtype.

    Parameters
    ----------
    onnx : module
        The imported ``onnx`` package (imported by the caller, so that importing
        :mod:`xpnet.onnx` does not need it).
    dtype : {"float32", "float64"}
        The model's floating type: every initializer is stored in it.
    opset : int
        The default-domain opset the graph is written for; converters may choose their
        operators by it.

    Attributes
    ----------
    prefix : str
        Name prefix of what the current layer adds (``"layers.3"``); set by the exporter.
    """

    def __init__(self, onnx: Any, dtype: str, opset: int) -> None:
        self._onnx = onnx
        self.dtype = dtype
        self.opset = opset
        self.prefix = "graph"
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = {"input", "output"}

    def _unique(self, name: str) -> str:
        candidate, i = name, 1
        while candidate in self._names:
            i += 1
            candidate = f"{name}_{i}"
        self._names.add(candidate)
        return candidate

    def constant(self, array: Any, name: str) -> str:
        """Store ``array`` (host data, cast to the model's dtype) as an initializer.

        Returns the tensor's name, ``"<prefix>.<name>"``.
        """
        data = np.ascontiguousarray(np.asarray(array, dtype=self.dtype))
        tensor_name = self._unique(f"{self.prefix}.{name}")
        self.initializers.append(self._onnx.numpy_helper.from_array(data, tensor_name))
        return tensor_name

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        """Append an operator of the default domain; returns the name of its one output."""
        output = self._unique(f"{self.prefix}.{op_type}")
        self.nodes.append(
            self._onnx.helper.make_node(op_type, inputs, [output], name=output, **attributes)
        )
        return output

    def finish(self, last: str) -> None:
        """Make ``last`` the graph output ``output``."""
        if self.nodes and list(self.nodes[-1].output) == [last]:
            # Rename rather than add an Identity: the graph then ends in the real operator.
            self.nodes[-1].output[0] = "output"
        else:
            # Nothing computed (e.g. a model of Dropout layers only) or an earlier tensor.
            self.nodes.append(
                self._onnx.helper.make_node("Identity", [last], ["output"], name="output")
            )
