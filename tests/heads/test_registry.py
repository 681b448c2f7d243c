"""The registry: the twelve public names, each paired with the loss that matches its output (GUIDE §3)."""

import keras
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
