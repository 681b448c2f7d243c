"""ResNet-12 backbone: shapes, layer wiring and parameter count."""

import keras
import numpy as np
import pytest

from keras_softmax.models import resnet12, resnet12_num_params

TINY = (4, 8, 8, 8)


@pytest.fixture(scope="module")
def backbone():
    inputs = keras.Input((16, 24, 3))
    return keras.Model(inputs, resnet12(inputs, TINY))


def test_output_shape(backbone):
    assert backbone.output.shape == (None, 1, 1, 8)
    features = backbone(np.random.default_rng(0).normal(size=(2, 16, 24, 3)).astype("float32"))
    assert tuple(features.shape) == (2, 1, 1, 8)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(features)))


def test_stage_shapes(backbone):
    # Each stage halves height and width (floor), and ends with the stage width.
    shapes = [backbone.get_layer(f"stage{i}_pool").output.shape for i in range(1, 5)]
    assert shapes == [(None, 8, 12, 4), (None, 4, 6, 8), (None, 2, 3, 8), (None, 1, 1, 8)]


def test_parameter_count_matches_hand_computed(backbone):
    # Stage c_in -> c: 3x3 convs 9*c_in*c + 18*c^2, shortcut c_in*c, 4 batch norms of 4c values.
    # (4, 8, 8, 8) from 3 channels:
    #   stage1: 108 + 288 + 12 + 64 = 472
    #   stage2: 288 + 1152 + 32 + 128 = 1600
    #   stage3 = stage4: 576 + 1152 + 64 + 128 = 1920
    assert backbone.count_params() == 472 + 1600 + 1920 + 1920 == 5912
    # Non-trainable: the moving mean and variance, 2c per batch norm, 4 per stage.
    non_trainable = sum(int(np.prod(v.shape)) for v in backbone.non_trainable_weights)
    assert non_trainable == 8 * (4 + 8 + 8 + 8) == 224
    assert resnet12_num_params(TINY) == 5912
    assert resnet12_num_params() == 76_672 + 565_760 + 2_360_320 + 9_431_040  # default widths, 12.4M


def test_layer_names_and_types(backbone):
    for i in range(1, 5):
        for k in (1, 2, 3):
            conv = backbone.get_layer(f"stage{i}_conv{k}")
            assert isinstance(conv, keras.layers.Conv2D)
            assert conv.kernel_size == (3, 3) and not conv.use_bias
            assert isinstance(backbone.get_layer(f"stage{i}_bn{k}"), keras.layers.BatchNormalization)
        shortcut = backbone.get_layer(f"stage{i}_shortcut_conv")
        assert shortcut.kernel_size == (1, 1) and not shortcut.use_bias
        assert isinstance(backbone.get_layer(f"stage{i}_shortcut_bn"), keras.layers.BatchNormalization)
        for relu in (f"stage{i}_relu1", f"stage{i}_relu2", f"stage{i}_relu"):
            layer = backbone.get_layer(relu)
            assert isinstance(layer, keras.layers.LeakyReLU)
            assert layer.negative_slope == pytest.approx(0.1)
        assert isinstance(backbone.get_layer(f"stage{i}_pool"), keras.layers.MaxPooling2D)
        with pytest.raises(ValueError):
            backbone.get_layer(f"stage{i}_relu3")  # no activation after the third batch norm


def test_add_joins_third_bn_and_shortcut(backbone):
    for i in range(1, 5):
        add = backbone.get_layer(f"stage{i}_add")
        sources = {t._keras_history.operation.name for t in add.input}
        assert sources == {f"stage{i}_bn3", f"stage{i}_shortcut_bn"}
        relu = backbone.get_layer(f"stage{i}_relu")
        assert relu.input._keras_history.operation is add


def test_widths_must_have_four_entries():
    with pytest.raises(ValueError, match="widths"):
        resnet12(keras.Input((16, 16, 3)), (4, 8, 8))


def test_drop_rate_adds_dropout_after_stages_1_2_and_dropblock_after_3_4():
    from keras_softmax.models import DropBlock2D

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, resnet12(inputs, TINY, drop_rate=0.1, drop_block_size=3, seed=5))
    for i in (1, 2):
        layer = model.get_layer(f"stage{i}_dropout")
        assert type(layer) is keras.layers.Dropout and layer.rate == 0.1 and layer.seed == 15 + i
        assert layer.input._keras_history.operation.name == f"stage{i}_pool"
    for i in (3, 4):
        layer = model.get_layer(f"stage{i}_dropblock")
        assert isinstance(layer, DropBlock2D) and (layer.rate, layer.block_size, layer.seed) == (0.1, 3, 15 + i)
        assert layer.input._keras_history.operation.name == f"stage{i}_pool"
    # The next stage reads the dropped features; the parameters do not change.
    assert model.get_layer("stage2_conv1").input._keras_history.operation.name == "stage1_dropout"
    assert model.get_layer("stage4_shortcut_conv").input._keras_history.operation.name == "stage3_dropblock"
    assert model.count_params() == resnet12_num_params(TINY)
    plain = keras.Model(inputs, resnet12(inputs, TINY))
    assert not [layer.name for layer in plain.layers if "drop" in layer.name]
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    plain.set_weights(model.get_weights())  # at inference the layers are the identity
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(plain(x)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [1.0, -0.1, True, "0.1"])
def test_drop_rate_must_be_below_one(rate):
    with pytest.raises(ValueError, match="drop_rate"):
        resnet12(keras.Input((16, 16, 3)), TINY, drop_rate=rate)
