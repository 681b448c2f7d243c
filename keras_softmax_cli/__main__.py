"""``python -m keras_softmax_cli``: the same as the ``keras-softmax`` command."""

from keras_softmax_cli import main

main()
