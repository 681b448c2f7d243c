"""The registry: the twelve public names, each paired with the loss that matches its output (GUIDE §3)."""

import sys

import keras
import numpy as np
import pytest

import keras_softmax as ks

EXPECTED = {
    "softmax": ("probabilities", ks.ProbabilityCrossEntropy),
    "log_softmax": ("log_probabilities", ks.NegativeLogLikelihood),
    "gumbel": ("probabilities", ks.ProbabilityCrossEntropy),
    "log_gumbel": ("log_probabilities", ks.NegativeLogLikelihood),
    "sparsemax": ("probabilities", ks.SparsemaxLoss),
    "entmax15": ("probabilities", ks.Entmax15Loss),
    "taylor": ("probabilities", ks.ProbabilityCrossEntropy),
    "log_taylor": ("log_probabilities", ks.NegativeLogLikelihood),
    "base2": ("probabilities", ks.ProbabilityCrossEntropy),
    "exp_sin": ("probabilities", ks.ProbabilityCrossEntropy),
    "normal_cdf": ("probabilities", ks.ProbabilityCrossEntropy),
    "hierarchical": ("log_probabilities", ks.NegativeLogLikelihood),
    "adaptive": ("log_probabilities", ks.AdaptiveSoftmaxLoss),
    "sampled": ("log_probabilities", ks.SampledSoftmaxLoss),
    "entmax_alpha": ("probabilities", ks.EntmaxAlphaLoss),
}
#: Heads that own their projection need the number of classes.
OWN_PROJECTION = {"adaptive": {"num_classes": 100}, "sampled": {"num_classes": 100}}


def test_list_heads_is_the_public_fifteen():
    assert ks.list_heads() == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_head_pairs_with_matching_loss(name):
    head = ks.get_head(name, **OWN_PROJECTION.get(name, {}))
    kind, loss_class = EXPECTED[name]
    assert head.name == name
    assert isinstance(head.layer, keras.layers.Layer)
    assert head.output_kind == kind == head.layer.output_kind
    assert type(head.loss) is loss_class
    assert head.owns_projection == (name in OWN_PROJECTION)
    if name in OWN_PROJECTION:  # sampled cannot smooth labels; no loss on logits for these
        assert head.num_logits(100) == 0
        fresh = head.make_loss()
        assert type(fresh) is loss_class and fresh is not head.loss
        with pytest.raises(ValueError, match="logits"):
            head.make_loss(from_logits=True)
        if name == "sampled":
            with pytest.raises(ValueError, match="label_smoothing"):
                head.make_loss(label_smoothing=0.1)
        else:
            assert head.make_loss(label_smoothing=0.1).label_smoothing == 0.1
        return
    fresh = head.make_loss(label_smoothing=0.1)
    assert type(fresh) is loss_class and fresh.label_smoothing == 0.1 and fresh is not head.loss
    assert head.num_logits(100) == (120 if name == "hierarchical" else 100)


def test_get_head_builds_independent_layers_and_records_params():
    a = ks.get_head("gumbel", temperature=2.0, seed=1)
    b = ks.get_head("gumbel", temperature=2.0, seed=1)
    assert a.layer is not b.layer
    assert a.params == {"temperature": 2.0, "seed": 1}


def test_describe_heads():
    rows = ks.describe_heads()
    assert [row["name"] for row in rows] == list(EXPECTED)
    by_name = {row["name"]: row for row in rows}
    assert by_name["softmax"]["parameters"] == {"temperature": 1.0, "drop_lowest": 0.0}
    assert by_name["taylor"]["parameters"] == {"order": 2}
    assert by_name["gumbel"]["parameters"] == {"temperature": 1.0, "hard": False, "seed": None,
                                               "drop_lowest": 0.0, "log_straight_through": True}
    assert set(by_name["log_gumbel"]["parameters"]) == {"temperature", "hard", "seed", "drop_lowest"}
    assert by_name["base2"]["parameters"] == {}
    for row in rows:
        assert row["output"] == EXPECTED[row["name"]][0]
        assert row["loss"] == EXPECTED[row["name"]][1].__name__
        assert row["summary"]


def test_public_classes_are_exported():
    for name in ("Softmax", "LogSoftmax", "GumbelSoftmax", "LogGumbelSoftmax", "Sparsemax", "Entmax15",
                 "TaylorSoftmax", "LogTaylorSoftmax", "Base2Softmax", "ExpSinSoftmax", "NormalCDFSoftmax",
                 "HierarchicalSoftmax", "AdaptiveSoftmax", "SampledSoftmax", "EntmaxAlpha"):
        assert issubclass(getattr(ks, name), ks.Head)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_pairing_switches_on_the_fenchel_young_gradient_and_a_bare_layer_does_not(name):
    """GUIDE §3: the Fenchel-Young path is on where the head is paired with its loss, never for a
    bare layer; an explicit parameter wins; ``unpaired_params`` gives the bare layer's setting."""
    from keras_softmax.heads.registry import unpaired_params

    layer_class = type(ks.get_head(name).layer)
    assert layer_class().fenchel_young_gradient is False
    assert ks.get_head(name).layer.fenchel_young_gradient is True
    assert ks.get_head(name).params == {}  # the user's parameters, as given
    assert ks.get_head(name, fenchel_young_gradient=False).layer.fenchel_young_gradient is False
    assert unpaired_params(name) == {"fenchel_young_gradient": False}
    assert ks.get_head(name, **unpaired_params(name)).layer.fenchel_young_gradient is False
    by_name = {row["name"]: row for row in ks.describe_heads()}
    assert by_name[name]["parameters"] == {"fenchel_young_gradient": True}
    model = ks.build_model(name, num_classes=3, widths=(2, 2, 2, 2))
    assert model.layers[-1].fenchel_young_gradient is True
    assert unpaired_params("softmax") == {}


# --------------------------------------------------------------------------- a head of one's own (issue 25)
@pytest.fixture
def own_head():
    """Registers ``cube_softmax`` (p ∝ exp(z^3 / 10)) for one test and removes it again."""
    from keras_softmax.heads import NormalizedScoresHead
    from keras_softmax.heads.registry import HEADS

    @ks.register_head("cube_softmax", loss=ks.ProbabilityCrossEntropy, summary="p ∝ exp(z^3 / 10)")
    class CubeSoftmax(NormalizedScoresHead):
        def __init__(self, scale=10.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def scores(self, z, training=False):
            return z * z * z / self.scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    yield CubeSoftmax
    HEADS.pop("cube_softmax", None)


def test_a_registered_head_works_wherever_a_built_in_name_does(own_head, tmp_path):
    assert "cube_softmax" in ks.list_heads()
    head = ks.get_head("cube_softmax", scale=5.0)
    assert type(head.layer) is own_head and type(head.loss) is ks.ProbabilityCrossEntropy
    row = {r["name"]: r for r in ks.describe_heads()}["cube_softmax"]
    assert row["parameters"] == {"scale": 10.0} and row["summary"] == "p ∝ exp(z^3 / 10)"
    model = ks.build_model("cube_softmax", num_classes=3, widths=(4, 4, 4, 4), head_params={"scale": 2.0})
    assert type(model.layers[-1]) is own_head
    model.save(tmp_path / "cube.keras")  # registered with Keras too: the file loads
    assert type(keras.saving.load_model(tmp_path / "cube.keras").layers[-1]) is own_head
    with pytest.raises(ValueError, match="registered already"):
        ks.register_head("cube_softmax", own_head, loss=ks.ProbabilityCrossEntropy)
    with pytest.raises(ValueError, match="Head"):
        ks.register_head("not_a_head", keras.layers.Dense, loss=ks.ProbabilityCrossEntropy)


def test_the_cli_finds_heads_of_a_plugin_module(tmp_path, monkeypatch):
    """``KERAS_SOFTMAX_PLUGINS=module`` is imported on the first look-up of a name (the CLI's --head)."""
    from keras_softmax.heads import registry

    (tmp_path / "my_heads.py").write_text(
        "import keras_softmax as ks\n"
        "@ks.register_head('half_softmax', loss=ks.NegativeLogLikelihood)\n"
        "class HalfSoftmax(ks.heads.NormalizedScoresHead):\n"
        "    log_output = True\n"
        "    def scores(self, z, training=False):\n"
        "        return z / 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KERAS_SOFTMAX_PLUGINS", "my_heads")
    # another test of this worker may have imported (and unregistered) a my_heads of its own
    monkeypatch.delitem(sys.modules, "my_heads", raising=False)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        assert registry.head_spec("half_softmax").output_kind == "log_probabilities"
        assert ks.get_head("half_softmax").output_kind == "log_probabilities"
    finally:
        registry.HEADS.pop("half_softmax", None)


def test_complete_params_is_the_one_place_that_completes_a_head():
    assert ks.complete_params("softmax", {"temperature": 2.0}, 10) == {"temperature": 2.0}
    assert ks.complete_params("sampled", {}, 10) == {"num_classes": 10}
    labels = np.array([3, 3, 3, 1, 1, 0])
    assert ks.complete_params("adaptive", {}, 4, labels=labels) == {"num_classes": 4, "class_order": [3, 1, 0, 2]}
    assert ks.complete_params("hierarchical", {}, 4, fine_to_coarse=[0, 0, 1, 1]) == {
        "num_classes": 4, "fine_to_coarse": [0, 0, 1, 1]}
    assert ks.complete_params("sampled", {"num_classes": 7}, 10) == {"num_classes": 7}  # given values win
