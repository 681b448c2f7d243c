"""A head a user registers in their own module works where a built-in name does: the CLI and a study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from keras_softmax.heads import registry
from keras_softmax.study.spec import StudyError, load_spec

from .helpers import TINY, cli_command, subprocess_env

PLUGIN = textwrap.dedent("""
    import keras_softmax as ks

    @ks.register_head("half_softmax", loss=ks.NegativeLogLikelihood)
    class HalfSoftmax(ks.heads.NormalizedScoresHead):
        \"\"\"log softmax(z / 2), a user's own head.\"\"\"
        log_output = True

        def scores(self, z, training=False):
            return z / 2
""")


def _train(tmp_path, out, **extra_env):
    env = subprocess_env(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env.update(extra_env)
    command = cli_command("train", "--head", "half_softmax", "--epochs", "1", *TINY, "--out", out)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_the_cli_trains_a_plugin_head_and_refuses_it_in_one_line_without_the_plugin(tmp_path):
    (tmp_path / "my_heads.py").write_text(PLUGIN)
    trained = _train(tmp_path, tmp_path / "run", KERAS_SOFTMAX_PLUGINS="my_heads")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads((tmp_path / "run" / "report.json").read_text())["head"] == "half_softmax"

    bare = _train(tmp_path, tmp_path / "bare")
    assert bare.returncode != 0 and "Traceback" not in bare.stderr, bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1 and "unknown head 'half_softmax'" in bare.stderr, bare.stderr


def test_a_study_spec_may_name_a_plugin_head(tmp_path, monkeypatch):
    (tmp_path / "my_heads.py").write_text(PLUGIN)
    spec = tmp_path / "spec.toml"
    spec.write_text('heads = ["half_softmax"]\nseeds = [0]\nepochs = 1\nwidths = [4, 8, 8, 8]\n')
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        # Without the plugin the name is unknown (one line); with it the spec loads.
        monkeypatch.delenv(registry.PLUGINS_VARIABLE, raising=False)
        try:
            load_spec(spec)
            raise AssertionError("an unknown head was accepted")
        except StudyError as error:
            assert "unknown head 'half_softmax'" in str(error)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv(registry.PLUGINS_VARIABLE, "my_heads")
        # another test of this worker may have imported (and unregistered) a my_heads of its own
        monkeypatch.delitem(sys.modules, "my_heads", raising=False)
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        assert load_spec(spec).heads == ("half_softmax",)
    finally:
        registry.HEADS.pop("half_softmax", None)
        monkeypatch.setattr(registry, "_plugins_loaded", False)
