"""Study specs: what they may hold, the one-line errors, and the runs they plan."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest

from keras_softmax.study.spec import Planner, StudyError, load_spec, tune_name

TINY = """
heads = ["softmax", "log_softmax"]
seeds = [0, 1]
epochs = 1
widths = [4, 8, 8, 8]
"""


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def plan(tmp_path, text, **options):
    return Planner(load_spec(write(tmp_path, text)), **options).plan()


@pytest.mark.parametrize(("text", "message"), [
    ("seeds = [0]\n", "heads must be a non-empty list"),
    ("heads = []\nseeds = [0]\n", "heads must be a non-empty list"),
    ("heads = ['softmax']\n", "seeds must be a non-empty list"),
    ("heads = ['softmax']\nseeds = [0, 0]\n", "lists a seed twice"),
    ("heads = ['softmax']\nseeds = [-1]\n", "seeds must be a non-empty list of integers >= 0"),
    ("heads = ['softmx']\nseeds = [0]\n", "unknown head 'softmx'"),
    ("heads = ['softmax']\nseeds = [0]\nepochz = 3\n", "unknown key 'epochz'"),
    ("heads = ['softmax']\nseeds = [0]\nseed = 3\n", "use seeds = [...]"),
    ("heads = ['softmax']\nseeds = [0]\nhead = 'softmax'\n", "not head"),
    ("heads = ['softmax']\nseeds = [0]\nbase = 'missing.toml'\n", "base preset not found"),
    ("heads = ['softmax']\nseeds = [0]\nepochs = 0\n", "epochs must be a positive integer"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nhead = 'softmax'\n", "every variant needs a name"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'a b'\n", "every variant needs a name"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'softmax'\nlr = 0.1\n", "used twice"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nhead = 'softmax'\nlrr = 0.1\n",
     "variant 'v': unknown setting 'lrr'"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nhead = 'nope'\n", "variant 'v': unknown head"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nrecipe = 'x'\n", "unknown recipe 'x'"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nhead = 'gumbel'\n"
     "head_params = { temperature = -1.5 }\n", "temperature must be a finite number > 0 (got -1.5)"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nhead = 'softmax'\nhead_params = { tau = 1 }\n",
     "head 'softmax' has no parameter 'tau'"),
    ("heads = ['softmax']\nseeds = [0]\n[[variants]]\nname = 'v'\nhead = 'softmax'\nloss = 'wrong'\n",
     "loss must be .*matched.*mismatched"),
    ("heads = ['softmax']\nseeds = [0]\n[tuning]\nseeds = [0]\n", "tuning needs at least one setting"),
    ("heads = ['softmax']\nseeds = [0]\n[tuning]\nlr = 0.1\n", "tuning: lr must be a non-empty list"),
    ("heads = ['softmax']\nseeds = [0]\n[[sections]]\ntitle = 't'\nrows = ['nope']\n", "'nope' is not a head"),
    ("heads = ['softmax']\nseeds = [0]\nreference = 'log_softmax'\n", "reference must be a head or variant"),
    ("heads = ['softmax']\nseeds = [0]\ntiming = 4\n", "timing must be a table"),
    ("heads = ['softmax']\nseeds = [0]\n[timing]\nnames = ['nope']\n", "timing: 'nope' is not a head or variant"),
    ("heads = ['softmax']\nseeds = [0]\n[timing]\nnames = ['softmax', 'softmax']\n", "names lists 'softmax' twice"),
    ("heads = ['softmax']\nseeds = [0]\n[timing]\nepochs = 1\n", "timing: epochs must be an integer >= 2"),
    ("heads = ['softmax']\nseeds = [0]\n[timing]\nhead = 'gumbel'\n", "a timing run keeps its name's head"),
    ("heads = ['softmax']\nseeds = [0]\n[timing]\nepochz = 3\n", "timing: unknown setting 'epochz'"),
])
def test_bad_specs_fail_with_one_line(tmp_path, text, message):
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as e:
        plan(tmp_path, text)
    assert "\n" not in str(e.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(StudyError, match="study spec not found"):
        load_spec(tmp_path / "none.toml")
    with pytest.raises(StudyError, match="not valid TOML"):
        load_spec(write(tmp_path, "heads = [\n"))


def test_heads_and_variants_times_seeds_with_precedence(tmp_path):
    runs = plan(tmp_path, TINY + """
        lr = 0.3
        [recipes.slow]
        lr = 0.01
        epochs = 2
        [[variants]]
        name = "gumbel-t3"
        head = "gumbel"
        head_params = { temperature = 3.0 }
        recipe = "slow"
        epochs = 3
        seeds = [5]
    """, settings={"batch_size": 16}, dataset="digits")
    assert [(r.name, r.seed, r.run_id) for r in runs] == [
        ("softmax", 0, "softmax-seed0"), ("softmax", 1, "softmax-seed1"),
        ("log_softmax", 0, "log_softmax-seed0"), ("log_softmax", 1, "log_softmax-seed1"),
        ("gumbel-t3", 5, "gumbel-t3-seed5")]
    head, variant = runs[0].config, runs[-1].config
    assert (head.head, head.lr, head.epochs, head.batch_size, head.seed) == ("softmax", 0.3, 1, 16, 0)
    # spec < recipe < variant < command line
    assert (variant.head, variant.lr, variant.epochs, variant.batch_size, variant.seed) == ("gumbel", 0.01, 3, 16, 5)
    assert variant.head_params == {"temperature": 3.0}
    assert runs[-1].settings == {"recipe": "slow", "head": "gumbel", "head_params": {"temperature": 3.0}, "epochs": 3}


def test_identical_runs_share_a_directory(tmp_path):
    runs = plan(tmp_path, TINY + """
        [[variants]]
        name = "softmax-t1"
        head = "softmax"
        head_params = { temperature = 1.0 }
        [[variants]]
        name = "softmax-same"
        head = "softmax"
    """)
    by_name = {(r.name, r.seed): r.run_id for r in runs}
    assert by_name[("softmax-same", 0)] == "softmax-seed0"  # nothing differs: the same run
    assert by_name[("softmax-t1", 0)] == "softmax-t1-seed0"  # an explicit default is still another config


def test_base_is_relative_to_the_spec_and_extends_appends(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "p.toml").write_text('description = "x"\nepochs = 4\nlr = 0.7\n')
    (tmp_path / "studies").mkdir()
    write(tmp_path / "studies", 'base = "../presets/p.toml"\nheads = ["softmax"]\nseeds = [0]\n'
          '[[variants]]\nname = "a"\nhead = "base2"\n', "main.toml")
    child = write(tmp_path / "studies", 'extends = "main.toml"\nseeds = [0, 1]\nepochs = 2\n'
                  '[[variants]]\nname = "b"\nhead = "taylor"\n', "more.toml")
    spec = load_spec(child)
    assert spec.base == (tmp_path / "presets" / "p.toml").resolve()
    assert [v.name for v in spec.variants] == ["a", "b"]
    runs = Planner(spec).plan()
    assert {(r.config.epochs, r.config.lr) for r in runs} == {(2, 0.7)}
    assert len(runs) == 6


def test_changing_the_head_drops_the_shared_head_params(tmp_path):
    runs = plan(tmp_path, """
        heads = ["gumbel"]
        seeds = [0]
        [[variants]]
        name = "v"
        head = "softmax"
    """)
    assert runs[-1].config.head_params == {}


def test_tuning_grid_reuses_the_shared_point_and_plans_the_tuned_runs(tmp_path):
    spec = load_spec(write(tmp_path, TINY + """
        lr = 0.2
        [tuning]
        heads = ["softmax"]
        lr = [0.1, 0.2]
        label_smoothing = [0.0, 0.1]
    """))
    planner = Planner(spec)
    runs = planner.plan()
    grid = [r for r in runs if r.kind == "tune"]
    assert [r.name for r in grid] == ["tune-softmax-lr0.1-ls0", "tune-softmax-lr0.1-ls0.1", "tune-softmax-lr0.2-ls0",
                                      "tune-softmax-lr0.2-ls0.1"]
    assert grid[2].run_id == "softmax-seed0"  # lr 0.2, no smoothing: the shared recipe itself
    tuned = planner.plan_tuned({"softmax": {"lr": 0.1, "label_smoothing": 0.1}})
    assert [(r.name, r.seed, r.run_id) for r in tuned] == [
        ("tuned-softmax", 0, "tune-softmax-lr0.1-ls0.1-seed0"), ("tuned-softmax", 1, "tuned-softmax-seed1")]
    assert tune_name("x", {"weight_decay": 5e-4}) == "tune-x-wd0.0005"


def test_a_missing_dataset_path_stops_the_study_before_any_run(tmp_path):
    with pytest.raises(StudyError, match="dataset path not found: /no/such/data.tar.gz"):
        plan(tmp_path, TINY, dataset="/no/such/data.tar.gz")


def test_cifar100_without_tensorflow_datasets_asks_for_the_folder_copy(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow_datasets"
                        else real(name, *a))
    with pytest.raises(StudyError, match="pass --dataset with a class-folder copy"):
        plan(tmp_path, TINY, dataset="cifar100")


def test_unknown_command_line_setting(tmp_path):
    with pytest.raises(StudyError, match="--set epochz: unknown setting"):
        plan(tmp_path, TINY, settings={"epochz": 1})


def test_timing_runs_are_each_names_recipe_for_a_few_epochs(tmp_path):
    spec = load_spec(write(tmp_path, TINY + """
        lr = 0.3
        [recipes.slow]
        lr = 0.01
        batch_size = 64
        [[variants]]
        name = "slow-softmax"
        head = "softmax"
        recipe = "slow"
        [timing]
        names = ["log_softmax", "slow-softmax"]
        """))
    planner = Planner(spec)
    ordinary = planner.plan()
    timing = planner.plan_timing()
    assert [(r.name, r.run_id, r.kind, r.seed) for r in timing] == [
        ("log_softmax", "timing-log_softmax-seed0", "timing", 0),
        ("slow-softmax", "timing-slow-softmax-seed0", "timing", 0)]
    assert not {r.run_id for r in timing} & {r.run_id for r in ordinary}
    # the same run as the name's seed-0 run, but for the epochs
    same_seed = {r.name: r.config for r in ordinary if r.seed == 0}
    for run in timing:
        assert run.config.epochs == 4 and same_seed[run.name].epochs == 1
        assert dataclasses.replace(run.config, epochs=1) == same_seed[run.name]
    assert (timing[1].config.head, timing[1].config.lr, timing[1].config.batch_size) == ("softmax", 0.01, 64)
    # every head and variant by default; settings of its own on top; none without [timing]
    spec = load_spec(write(tmp_path, TINY + "[timing]\nseeds = [1, 2]\nepochs = 3\n", "all.toml"))
    runs = Planner(spec).plan_timing()
    assert [(r.name, r.seed, r.config.epochs) for r in runs] == [
        ("softmax", 1, 3), ("softmax", 2, 3), ("log_softmax", 1, 3), ("log_softmax", 2, 3)]
    assert Planner(load_spec(write(tmp_path, TINY, "none.toml"))).plan_timing() == []


def test_a_timing_run_equal_to_a_study_run_is_an_error(tmp_path):
    planner = Planner(load_spec(write(tmp_path, TINY + "[timing]\nepochs = 2\n")))
    planner.plan()
    planner.plan_timing()  # epochs 2 differs from the study's 1: fine
    same = Planner(load_spec(write(tmp_path, TINY.replace("epochs = 1", "epochs = 4") + "[timing]\n", "same.toml")))
    same.plan()
    with pytest.raises(StudyError, match="timing run of 'softmax' would be the same run as 'softmax-seed0'"):
        same.plan_timing()


@pytest.mark.parametrize("name", ["cifar100.toml", "cifar100-questions.toml"])
def test_the_zoo_specs_plan(name, tmp_path):
    from pathlib import Path

    data = tmp_path / "cifar100-train-jpg.tar.gz"
    data.write_bytes(b"")  # only its existence is checked when planning
    spec = load_spec(Path(__file__).resolve().parents[2] / "zoo" / "studies" / name)
    runs = Planner(spec, dataset=str(data)).plan()
    assert len(spec.heads) == 12 and spec.seeds == (0, 1, 2, 3, 4)
    assert {r.config.dataset for r in runs} == {str(data)}
    # zoo/studies/README.md: 60 head runs; 105 variant runs and 216 grid runs (12 heads x 9 points x 2 seeds)
    assert len({r.run_id for r in runs}) == (60 if name == "cifar100.toml" else 60 + 105 + 216)
    timing = Planner(spec, dataset=str(data)).plan_timing()
    assert len(timing) == (0 if name == "cifar100.toml" else 51)
    assert all(r.config.epochs == 4 and r.run_id.startswith("timing-") for r in timing)
    if spec.tuning:
        assert len(spec.tuning.points()) >= 6
        original = next(r for r in runs if r.name == "softmax-original-mismatched").config
        assert (original.optimizer, original.schedule, original.lr, original.batch_size, original.augment,
                original.normalize, original.val_split, original.loss) == (
            "adam", "onecycle", 0.01, 128, False, False, 0.2, "mismatched")


def test_the_strong_recipe_spec_plans_six_heads_on_three_seeds_at_the_strong_preset(tmp_path):
    """zoo/studies/cifar100-strong.toml (issue 24 item 2): 18 runs, each the strong preset with its head."""
    from pathlib import Path

    from keras_softmax.training.config import resolve

    root = Path(__file__).resolve().parents[2]
    data = tmp_path / "cifar100-train-jpg.tar.gz"
    data.write_bytes(b"")
    spec = load_spec(root / "zoo" / "studies" / "cifar100-strong.toml")
    runs = Planner(spec, dataset=str(data)).plan()
    assert sorted(spec.heads) == sorted(["log_softmax", "softmax", "taylor", "gumbel", "sparsemax", "entmax15"])
    assert len({r.run_id for r in runs}) == 18
    preset = resolve(root / "zoo" / "presets" / "cifar100-log_softmax-strong.toml")
    for run in runs:
        config = run.config
        assert (config.augment_policy, config.cutmix, config.batch_size, config.lr) == (
            preset.augment_policy, preset.cutmix, preset.batch_size, preset.lr)
        assert (config.epochs, config.widths, config.swa_start) == (300, [64, 160, 320, 640], 0.75)  # as pinned
        assert config.seed in (0, 1, 2) and config.head in spec.heads


# The strong preset's network and epochs before 2026-12-07's width study adopted 80-200-400-800 for 240 epochs
# (cifar100-strong-width.toml's rule): every strong study ran them, and its spec pins them.
STRONG_NETWORK_RAN = {"widths": [64, 160, 320, 640], "epochs": 300}
# The strong preset's averaging window when the first strong studies ran: the preset took swa_start = 0.6 on
# 2026-12-07 (cifar100-strong-swa.toml's rule), and each of these specs pins the window its records had.
STRONG_STUDIES_RAN = {"swa_start": 0.75} | STRONG_NETWORK_RAN
#: what each strong study's spec pins against the preset as it is now
STRONG_STUDY_PINS = {"cifar100-strong": STRONG_STUDIES_RAN, "cifar100-strong-recipe": STRONG_STUDIES_RAN,
                     "cifar100-strong-swa": STRONG_STUDIES_RAN, "cifar100-strong-dropblock": STRONG_NETWORK_RAN,
                     "cifar100-strong-width": STRONG_NETWORK_RAN}


@pytest.mark.parametrize("name", sorted(STRONG_STUDY_PINS))
def test_the_strong_studies_pin_the_recipe_their_runs_had_after_the_preset_took_another(name):
    from pathlib import Path

    from keras_softmax.training.config import resolve

    root = Path(__file__).resolve().parents[2]
    preset = resolve(root / "zoo" / "presets" / "cifar100-log_softmax-strong.toml")
    spec = load_spec(root / "zoo" / "studies" / f"{name}.toml")
    assert (preset.swa_start, preset.widths, preset.epochs) == (0.6, [80, 200, 400, 800], 240)
    pins = STRONG_STUDY_PINS[name]
    assert {key: spec.settings[key] for key in pins} == pins


STRONG_CANDIDATE_STUDIES = {
    # spec: the settings each name changes against the strong preset (as the spec pins it: STRONG_STUDY_PINS),
    # and runs its records must hold
    "cifar100-strong-recipe": ({"log_softmax": {}, "log_softmax-cutmix0.25": {"cutmix": 0.25},
                                "log_softmax-wd2.5e-3": {"weight_decay": 2.5e-3},
                                "log_softmax-ls0.2": {"label_smoothing": 0.2},
                                "log_softmax-sam0.05-late": {"sam_rho": 0.05, "sam_start": 0.75}},
                               {"log_softmax-sam0.05-late-seed0", "log_softmax-cutmix0.25-seed1"}, STRONG_STUDIES_RAN),
    "cifar100-strong-swa": ({"log_softmax": {}, "log_softmax-swalr0.1": {"swa_lr": 0.1},
                             "log_softmax-swastart0.6": {"swa_start": 0.6}},
                            {"log_softmax-swalr0.1-seed2", "log_softmax-swastart0.6-seed1"}, STRONG_STUDIES_RAN),
    "cifar100-strong-dropblock": ({"log_softmax": {}, "log_softmax-dropblock0.1": {"drop_block": 0.1}},
                                  {"log_softmax-seed0", "log_softmax-dropblock0.1-seed2"}, STRONG_NETWORK_RAN),
    "cifar100-strong-width": ({"log_softmax": {},
                               "log_softmax-width1.25": {"widths": [80, 200, 400, 800], "epochs": 240}},
                              {"log_softmax-seed0", "log_softmax-width1.25-seed2"}, STRONG_NETWORK_RAN),
}


@pytest.mark.parametrize("name", sorted(STRONG_CANDIDATE_STUDIES))
def test_the_strong_recipe_candidates_each_change_one_setting_and_reuse_the_recorded_preset_runs(tmp_path,
                                                                                                  monkeypatch, name):
    """zoo/studies/cifar100-strong-recipe.toml, -strong-swa.toml, -strong-dropblock.toml and -strong-width.toml
    (issue 24 item 1):
    the preset and its candidates on seeds 0-2; the preset's runs are the recorded ones (same configs), so only
    the candidates train, and each candidate changes only its own settings."""
    import importlib.util
    from pathlib import Path

    from keras_softmax.study.runner import _differences, run_state
    from keras_softmax.training.config import resolve

    changed, must_hold, pinned = STRONG_CANDIDATE_STUDIES[name]
    root = Path(__file__).resolve().parents[2]
    spec = load_spec(root / "zoo" / "studies" / f"{name}.toml")
    dataset = ".data/cifar100-train-jpg.tar.gz"  # as the recorded runs name it; planning checks that it exists
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".data").mkdir()
    (tmp_path / dataset).write_bytes(b"")
    runs = Planner(spec, dataset=dataset).plan()
    assert len({r.run_id for r in runs}) == 3 * len(changed)
    preset = resolve(root / "zoo" / "presets" / "cifar100-log_softmax-strong.toml").to_dict() | pinned
    for run in runs:
        config = run.config.to_dict()
        differs = {k: v for k, v in config.items() if preset.get(k) != v and k not in ("seed", "dataset")}
        assert differs == changed[run.name], run.run_id
    loader = importlib.util.spec_from_file_location("study_records", root / "zoo" / "study_records.py")
    records = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(records)
    folder = root / "zoo" / "results" / f"{name}-records"
    records.unpack(folder, tmp_path / "study")
    recorded = {Path(json.loads(line)["path"]).parts[1]
                for line in records.record_lines(folder) if json.loads(line)["path"].startswith("runs/")}
    assert must_hold <= recorded
    for run in runs:  # the preset's and the candidates' recorded runs are finished with the spec's settings
        path = tmp_path / "study" / "runs" / run.run_id
        if run.name == "log_softmax" or run.run_id in recorded:
            assert run_state(path) == "finished" and _differences(run, path) == [], run.run_id
        else:
            assert run_state(path) == "new"


@pytest.mark.parametrize("where", ["val_split = 0\n", "[[variants]]\nname = 'v'\nhead = 'softmax'\nval_split = 0\n"])
def test_a_study_refuses_runs_without_a_validation_split(tmp_path, where):
    # a study chooses and compares on the validation split; val_split = 0 (the final fit on every
    # training image) is for a single run
    with pytest.raises(StudyError, match=r"val_split = 0 holds out no validation images.*set a validation split"):
        plan(tmp_path, "heads = ['softmax']\nseeds = [0]\nepochs = 1\n" + where)
