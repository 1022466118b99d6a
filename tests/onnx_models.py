"""Small ONNX graphs built with ``onnx.helper`` for tests: every signature and output kind, in milliseconds.

Each builder returns the serialised file; the weights are fixed so the
expected answers can be computed with numpy in the test.  The trained
TensorFlow models (digits, diabetes, digit images) cover the real export path.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

#: Iris-like classifier: 4 float features -> 3 classes with string labels.
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
IRIS_WEIGHTS = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-5.0, 0.0, 0.0], [0.0, 0.0, 20.0]], dtype=np.float32)
IRIS_BIAS = np.array([10.0, 2.0, -36.0], dtype=np.float32)
#: Regression: 3 float features -> one value.
REGRESSION_WEIGHTS = np.array([[10.0], [-5.0], [2.0]], dtype=np.float32)
REGRESSION_BIAS = np.array([100.0], dtype=np.float32)


def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _tensor(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def classifier(*, logits: bool = False) -> bytes:
    """``features`` float32 [batch, 4] -> ``probabilities`` (softmax) or ``logits`` float32 [batch, 3]."""
    out = "logits" if logits else "probabilities"
    nodes = [
        helper.make_node("MatMul", ["features", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z" if not logits else out]),
    ]
    if not logits:
        nodes.append(helper.make_node("Softmax", ["z"], [out], axis=1))
    return _model(
        nodes,
        [_tensor("features", TensorProto.FLOAT, ["batch", 4])],
        [_tensor(out, TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(IRIS_WEIGHTS, "W"), numpy_helper.from_array(IRIS_BIAS, "b")],
    )


def classifier_expected(x: np.ndarray) -> np.ndarray:
    """What :func:`classifier` computes: the softmax of ``x @ W + b``."""
    z = x.astype(np.float64) @ IRIS_WEIGHTS + IRIS_BIAS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def regression() -> bytes:
    """``features`` float32 [batch, 3] -> ``value`` float32 [batch, 1] = ``x @ W + b``."""
    return _model(
        [helper.make_node("MatMul", ["features", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["value"])],
        [_tensor("features", TensorProto.FLOAT, ["batch", 3])],
        [_tensor("value", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(REGRESSION_WEIGHTS, "W"), numpy_helper.from_array(REGRESSION_BIAS, "b")],
    )


def regression_expected(x: np.ndarray) -> np.ndarray:
    """What :func:`regression` computes."""
    return x.astype(np.float64) @ REGRESSION_WEIGHTS + REGRESSION_BIAS


def multi_input() -> bytes:
    """Three typed inputs, two raw outputs.

    ``a`` float32 [batch, 2], ``b`` int64 [batch, 2], ``mask`` bool [batch, 2] ->
    ``sum`` float32 [batch, 2] = a + b, and ``kept`` int32 [batch, 2] = b where mask, else 0.
    """
    return _model(
        [
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "bf"], ["sum"]),
            helper.make_node("Cast", ["b"], ["bi"], to=TensorProto.INT32),
            helper.make_node("Where", ["mask", "bi", "zero"], ["kept"]),
        ],
        [
            _tensor("a", TensorProto.FLOAT, ["batch", 2]),
            _tensor("b", TensorProto.INT64, ["batch", 2]),
            _tensor("mask", TensorProto.BOOL, ["batch", 2]),
        ],
        [_tensor("sum", TensorProto.FLOAT, ["batch", 2]), _tensor("kept", TensorProto.INT32, ["batch", 2])],
        [numpy_helper.from_array(np.zeros((1,), np.int32), "zero")],
    )


def image_classifier() -> bytes:
    """``image`` uint8 [batch, 2, 2, 1] -> ``probabilities`` [batch, 2]: is the image brighter on the left?"""
    weights = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=np.float32) / 16.0
    return _model(
        [
            helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["f", "flat"], ["x"]),
            helper.make_node("MatMul", ["x", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ],
        [_tensor("image", TensorProto.UINT8, ["batch", 2, 2, 1])],
        [_tensor("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.array([-1, 4], np.int64), "flat"), numpy_helper.from_array(weights, "W")],
    )
