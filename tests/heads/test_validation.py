"""Invalid parameters raise ValueError whose message names the parameter."""

import math

import numpy as np
import pytest

import keras_softmax as ks

TEMPERATURE_HEADS = ("softmax", "log_softmax", "gumbel", "log_gumbel")
BAD_TEMPERATURES = [0, 0.0, -1.0, -1e-9, math.nan, math.inf, -math.inf, "hot", "2.0", None, True,
                    [1.0], np.float32("nan")]
BAD_FRACTIONS = [-0.1, -1e-12, 1.0, 1.5, math.nan, math.inf, "0.1", "x", None, True, [0.1]]


@pytest.mark.parametrize("value", BAD_TEMPERATURES, ids=repr)
@pytest.mark.parametrize("name", TEMPERATURE_HEADS)
def test_bad_temperature(name, value):
    with pytest.raises(ValueError, match="temperature"):
        ks.get_head(name, temperature=value)


@pytest.mark.parametrize("value", BAD_FRACTIONS, ids=repr)
@pytest.mark.parametrize("name", TEMPERATURE_HEADS)
def test_bad_drop_lowest(name, value):
    with pytest.raises(ValueError, match="drop_lowest"):
        ks.get_head(name, drop_lowest=value)


@pytest.mark.parametrize("name", TEMPERATURE_HEADS)
def test_good_values_accepted(name):
    head = ks.get_head(name, temperature=np.float32(0.5), drop_lowest=0)
    assert head.layer.temperature == 0.5 and head.layer.drop_lowest == 0.0
    assert ks.get_head(name, temperature=3, drop_lowest=0.999).layer.temperature == 3.0


@pytest.mark.parametrize("value", [3, 0, 1, -2, 2.0, 4.5, "2", True, None, math.nan], ids=repr)
@pytest.mark.parametrize("name", ["taylor", "log_taylor"])
def test_bad_taylor_order(name, value):
    with pytest.raises(ValueError, match="order"):
        ks.get_head(name, order=value)


@pytest.mark.parametrize("order", [2, 4, 10])
def test_good_taylor_order(order):
    assert ks.get_head("taylor", order=order).layer.order == order


@pytest.mark.parametrize("value", [1, 0, "yes", "True", None, 1.0], ids=repr)
@pytest.mark.parametrize("name", ["gumbel", "log_gumbel"])
def test_bad_hard(name, value):
    with pytest.raises(ValueError, match="hard"):
        ks.get_head(name, hard=value)


@pytest.mark.parametrize("value", [-1, 1.5, "3", True], ids=repr)
def test_bad_seed(value):
    with pytest.raises(ValueError, match="seed"):
        ks.get_head("gumbel", seed=value)


@pytest.mark.parametrize("value", [1, None, "no"], ids=repr)
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_bad_fenchel_young_gradient(name, value):
    with pytest.raises(ValueError, match="fenchel_young_gradient"):
        ks.get_head(name, fenchel_young_gradient=value)


@pytest.mark.parametrize(
    "params,needle",
    [
        ({"fine_to_coarse": [0, 2, 2]}, "fine_to_coarse"),  # superclass 1 missing
        ({"fine_to_coarse": [1, 1, 2]}, "fine_to_coarse"),  # superclass 0 missing
        ({"fine_to_coarse": [0, -1, 1]}, "fine_to_coarse"),
        ({"fine_to_coarse": []}, "fine_to_coarse"),
        ({"fine_to_coarse": [0, 1.5, 1]}, "fine_to_coarse"),
        ({"fine_to_coarse": ["a", "b"]}, "fine_to_coarse"),
        ({"fine_to_coarse": "0011"}, "fine_to_coarse"),
        ({"fine_to_coarse": 3}, "fine_to_coarse"),
        ({"fine_to_coarse": [0, 0, 1], "num_classes": 4}, "num_classes"),
        ({"num_classes": 10}, "num_classes"),  # != 100 without a map
        ({"num_classes": 10}, "fine_to_coarse"),
    ],
)
def test_bad_hierarchical_map(params, needle):
    with pytest.raises(ValueError, match=needle):
        ks.get_head("hierarchical", **params)


def test_hierarchical_good_maps():
    assert ks.get_head("hierarchical", num_classes=100).layer.num_coarse == 20
    head = ks.get_head("hierarchical", fine_to_coarse=(1, 0, 1), num_classes=3)
    assert head.num_logits(3) == 5
    with pytest.raises(ValueError, match="fine classes"):
        head.num_logits(4)


def test_hierarchical_wrong_number_of_logits():
    layer = ks.get_head("hierarchical", fine_to_coarse=[0, 0, 1]).layer
    with pytest.raises(ValueError, match="logits"):
        layer(np.zeros((1, 4), dtype="float32"))


@pytest.mark.parametrize("name", ["softmx", "", "Softmax", None, 3])
def test_unknown_head_lists_valid_names(name):
    with pytest.raises(ValueError) as info:
        ks.get_head(name)
    message = str(info.value)
    assert "unknown head" in message
    for valid in ks.list_heads():
        assert valid in message


@pytest.mark.parametrize(
    "name,param",
    [("softmax", "temprature"), ("base2", "temperature"), ("sparsemax", "temperature"),
     ("taylor", "drop_lowest"), ("hierarchical", "hard"), ("gumbel", "dtype")],
)
def test_unknown_parameter_is_named(name, param):
    with pytest.raises(ValueError, match=f"'{param}'") as info:
        ks.get_head(name, **{param: 1.0})
    assert name in str(info.value)


@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_float16", "float16"])
def test_heads_refuse_a_low_precision_dtype(dtype):
    with pytest.raises(ValueError, match="dtype"):
        ks.Softmax(dtype=dtype)


@pytest.mark.parametrize("value", [-0.1, 1.0, math.nan, "0.1"], ids=repr)
@pytest.mark.parametrize("loss", [ks.ProbabilityCrossEntropy, ks.NegativeLogLikelihood, ks.SparsemaxLoss,
                                  ks.Entmax15Loss])
def test_bad_label_smoothing(loss, value):
    with pytest.raises(ValueError, match="label_smoothing"):
        loss(label_smoothing=value)


@pytest.mark.parametrize("value", [0, 1, -1e-7, math.nan])
def test_bad_epsilon(value):
    with pytest.raises(ValueError, match="epsilon"):
        ks.ProbabilityCrossEntropy(epsilon=value)
