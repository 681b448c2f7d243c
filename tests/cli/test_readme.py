"""Issue 22 item 6: the README's commands run as written.

Every ``keras-softmax`` line of the README's shell blocks names a real command and only options that
command has; every ``--set KEY=`` a real setting and every ``--head`` a registered head; every file of
the repository the README names (presets, study specs, examples, scripts) exists, and presets parse
(``tomllib``, then the config's own rules); the extras its ``pip install`` lines ask for exist.
The README once sent users to ``zoo/presets/cifar100-log_softmax.toml``, which did not exist.
"""

from __future__ import annotations

import py_compile
import re
import shlex
import tomllib

import click
import pytest

from keras_softmax_cli.commands import main

from .helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL_BLOCKS = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", README, flags=re.S)
#: Paths inside the repository the README may name (external ones, ../shared/..., are the user's).
REPO_PATH = re.compile(r"(?<![\w./-])((?:zoo|examples|bench|keras_softmax|keras_softmax_cli|tests|docs|\.ci)/[\w./*-]*\w)")


def _shell_commands() -> list[list[str]]:
    """Each simple command of the shell blocks, as words (continuation lines joined, comments cut)."""
    commands = []
    for block in SHELL_BLOCKS:
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|\|\||;", line):
                words = shlex.split(part)
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                    words = words[1:]
                if words:
                    commands.append(words)
    return commands


def _cli_lines():
    return [words[1:] for words in _shell_commands() if words[0] == "keras-softmax"]


def _resolve(words):
    """The click command the words name, and the rest of the words."""
    command, rest = main, list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"`keras-softmax {' '.join(words)}`: no command {name!r}"
        command = command.commands[name]
    return command, rest


def test_the_readme_has_commands_to_check():
    assert len(_cli_lines()) >= 15


@pytest.mark.parametrize("words", _cli_lines(), ids=lambda w: " ".join(w)[:60])
def test_every_cli_line_names_real_commands_options_settings_and_heads(words):
    from keras_softmax.heads import list_heads
    from keras_softmax.training.config import FIELDS

    command, rest = _resolve(words)
    options = {"--help", "-h"} | {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    if command is main:
        options |= {"--version"}
    for i, word in enumerate(rest):
        if word.startswith("-") and not re.fullmatch(r"-?\d[\d.e-]*", word):
            assert word.split("=", 1)[0] in options, f"`keras-softmax {' '.join(words)}`: no option {word}"
        previous = rest[i - 1] if i else ""
        if previous == "--set":
            key = word.split("=", 1)[0]
            assert key in FIELDS, f"`keras-softmax {' '.join(words)}`: no setting {key!r}"
        if previous == "--head" and "<" not in word and word.isidentifier():
            assert word in list_heads(), f"`keras-softmax {' '.join(words)}`: no head {word!r}"


def _named_paths():
    paths = set(REPO_PATH.findall(README))
    for words in _shell_commands():
        paths |= {w for w in words if REPO_PATH.fullmatch(w)}
    return sorted(p for p in paths if "<" not in p and "*" not in p and "SPEC" not in p)


@pytest.mark.parametrize("name", _named_paths())
def test_every_file_the_readme_names_exists_and_parses(name):
    path = ROOT / name
    assert path.exists(), f"the README names {name}, which does not exist"
    if path.suffix == ".toml":
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if name.startswith("zoo/presets/"):
            from keras_softmax.training.config import read_toml, resolve

            read_toml(path)
            resolve(path)  # every value passes its setting's rule
        assert data
    if path.suffix == ".py":
        py_compile.compile(str(path), doraise=True)


def test_every_script_the_readme_runs_exists():
    for words in _shell_commands():
        if words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"the README runs {words[1]}, which does not exist"


def test_the_extras_the_readme_installs_exist():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {}))
    for words in _shell_commands():
        if words[:2] == ["pip", "install"]:
            for word in words[2:]:
                match = re.fullmatch(r"(?:\.|keras-softmax)\[([\w,]+)\]", word)
                if match:
                    for extra in match.group(1).split(","):
                        assert extra in extras, f"the README installs the extra {extra!r}, which does not exist"
