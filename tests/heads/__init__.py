"""Tests of the heads library: keras_softmax.heads, keras_softmax.losses, keras_softmax.mismatch."""
