"""load_dataset's outline: what a dataset will hold, before its images decode (training.ahead builds on it).

The outline must describe exactly the dataset that follows: the model and its optimizer's schedule are
built from it while the images decode.
"""

from __future__ import annotations

import pytest

from keras_softmax.data import DatasetError, load_dataset, sources
from keras_softmax.data.sources import Outline, outline_of

from .test_sources import write_tar, write_tree


@pytest.mark.parametrize("kind", ["directory", "archive", "cached archive"])
@pytest.mark.parametrize("val_split, limit", [(0.25, None), (2, None), (0.5, 6)])
def test_class_folders_outline_comes_before_decoding_and_matches_the_dataset(tmp_path, monkeypatch, kind,
                                                                             val_split, limit):
    tree = write_tree(tmp_path / "tree", per_class=5)
    source = tree if kind == "directory" else write_tar(tree, tmp_path / "tree.tgz")
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    if kind == "cached archive":
        load_dataset(source)
    events = []
    real_decode = sources._decode_all
    monkeypatch.setattr(sources, "_decode_all", lambda items: events.append("decode") or real_decode(items))
    data = load_dataset(source, val_split=val_split, limit=limit, seed=2, on_outline=events.append)
    outlines = [e for e in events if isinstance(e, Outline)]
    assert len(outlines) == 1
    if kind != "cached archive":
        assert isinstance(events[0], Outline) and "decode" in events  # before the first image decodes
    assert outlines[0] == outline_of(data)
    assert (outlines[0].num_train, outlines[0].num_val) == (len(data.y_train), len(data.y_val))
    assert outlines[0].class_names == ["cat", "dog", "eel"] and outlines[0].image_shape == (32, 32, 3)


@pytest.mark.parametrize("labels", ["fine", "coarse"])
def test_other_sources_give_their_outline_once_at_the_end(labels):
    seen = []
    if labels == "coarse":
        with pytest.raises(DatasetError, match="fine->coarse"):
            load_dataset("digits", labels="coarse", on_outline=seen.append)
        assert seen == []  # not called when loading fails first
        return
    data = load_dataset("digits", val_split=0.2, on_outline=seen.append)
    assert seen == [outline_of(data)] and seen[0].num_classes == 10


def test_coarse_labels_outline_has_the_superclasses(tmp_path, monkeypatch):
    from keras_softmax.cifar100 import COARSE_NAMES, FINE_NAMES

    colours = {name: (i, 2 * i % 256, 3 * i % 256) for i, name in enumerate(FINE_NAMES)}
    tree = write_tree(tmp_path / "tree", per_class=2, test_per_class=0, classes=colours)
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    seen = []
    data = load_dataset(tree, val_split=20, labels="coarse", on_outline=seen.append)
    assert seen == [outline_of(data)] and seen[0].class_names == list(COARSE_NAMES)


def test_a_split_that_leaves_nothing_gives_no_outline_and_the_usual_error(tmp_path, monkeypatch):
    # The outline only observes: a bad image still outranks a bad split, as without it.
    tree = write_tree(tmp_path / "tree", per_class=2)
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    seen = []
    with pytest.raises(DatasetError, match=r"val_split=6 leaves no training images \(6 images in "):
        load_dataset(tree, val_split=6, on_outline=seen.append)
    assert seen == []
    (tree / "train" / "cat" / "0.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load_dataset(tree, val_split=6, on_outline=seen.append)
