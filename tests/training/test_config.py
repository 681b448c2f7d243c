"""Config resolution: defaults < dataset preset < --config file < flags; TOML round trip; errors."""

import dataclasses
import tomllib

import pytest

from keras_softmax.training.config import (
    FIELDS,
    ConfigError,
    Rule,
    TrainConfig,
    dataset_preset,
    parse_head_param,
    read_toml,
    resolve,
    to_toml,
)


def test_defaults_then_dataset_preset():
    config = resolve()
    preset = dataset_preset("digits")
    assert config.dataset == "digits"
    assert config.epochs == preset["epochs"] != TrainConfig.epochs
    assert config.widths == preset["widths"]


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('head = "gumbel"\nepochs = 7\nlr = 0.3\n[head_params]\ntemperature = 2.0\nhard = true\n')
    config = resolve(path, {"epochs": 3, "head_params": {"temperature": 0.5}, "lr": None})
    assert (config.head, config.epochs, config.lr) == ("gumbel", 3, 0.3)
    assert config.head_params == {"temperature": 0.5, "hard": True}


def test_changing_head_drops_the_preset_head_params(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('head = "taylor"\n[head_params]\norder = 4\n')
    assert resolve(path, {"head": "softmax"}).head_params == {}


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = resolve(None, {"head": "log_gumbel", "head_params": {"temperature": 3.0, "hard": False},
                            "val_split": 500, "precision": "mixed_bfloat16"})
    text = to_toml(config)
    assert tomllib.loads(text)["head_params"] == {"temperature": 3.0, "hard": False}
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert resolve(path) == config
    for field in TrainConfig.__dataclass_fields__:
        assert field in tomllib.loads(text), f"{field} not written out"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": -1}, "batch_size"),
    ({"lr": 0.0}, "lr must be"),
    ({"precision": "float16"}, "precision must be one of"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"widths": [1, 2, 3]}, "widths must be four"),
    ({"val_split": -1}, "val_split"),
    ({"val_split": 1.5}, "val_split"),
])
def test_invalid_values_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(None, overrides)


def test_unknown_setting_and_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'epochz'"):
        read_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        read_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize(("text", "expected"), [
    ("temperature=3", ("temperature", 3)),
    ("temperature=0.5", ("temperature", 0.5)),
    ("hard=true", ("hard", True)),
    ("fine_to_coarse=[0, 1, 1]", ("fine_to_coarse", [0, 1, 1])),
    ("name=abc", ("name", "abc")),
])
def test_parse_head_param(text, expected):
    assert parse_head_param(text) == expected


def test_parse_head_param_needs_key_and_value():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_head_param("temperature")


# --- issue 22: every setting is checked against its type and range before anything runs ----------

def _wrong_values(rule):
    """Values of the wrong type for ``rule`` (a string where a number goes, a number where a string goes)."""
    candidates = ["lots", 3, True, [1], {"a": 1}, 2.5, -1]
    return [v for v in candidates if not rule(v)]


def test_every_setting_declares_its_rule():
    for field in dataclasses.fields(TrainConfig):
        assert isinstance(field.metadata.get("rule"), Rule), f"{field.name} has no rule (use setting(default, rule))"
        assert field.metadata["rule"](getattr(TrainConfig(), field.name)), f"{field.name}'s default fails its rule"


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(TrainConfig) if f.name != "dataset"])
def test_a_wrong_type_for_every_setting_is_one_line_naming_it(key):
    """``--set cutmix=lots`` (and label_smoothing, dropout, momentum, ema, warmup_epochs) ended in a
    Python ``TypeError``; now every setting answers with its name, what it expects and what it got."""
    rule = FIELDS[key].metadata["rule"]
    for value in _wrong_values(rule)[:3]:
        with pytest.raises(ConfigError) as error:
            resolve(None, {key: value})
        message = str(error.value)
        assert message.startswith(f"{key} must be {rule.expects}") and repr(value) in message, message
        assert "\n" not in message


def test_a_wrong_type_in_a_toml_file_names_the_file(tmp_path):
    preset = tmp_path / "preset.toml"
    preset.write_text('label_smoothing = "high"\n')
    with pytest.raises(ConfigError, match=r"label_smoothing must be a number in \[0, 1\) \(got 'high' from preset.toml\)"):
        resolve(preset)


def test_set_without_an_equals_sign_names_set():
    """``--set garbage`` answered "--head-param expects KEY=VALUE"."""
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        parse_head_param("garbage", "--set")
