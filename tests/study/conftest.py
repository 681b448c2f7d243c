"""The end-to-end study tests share the CLI tests' private cache (``KERAS_SOFTMAX_CACHE``)."""

from cli.conftest import cache_dir  # noqa: F401  (pytest puts tests/ on sys.path for the cli package)
