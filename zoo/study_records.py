"""Pack a study directory's run records into compressed text files, one per run name, or unpack them to continue
the study.

A record keeps, per run, what the study's report and its resume logic read — ``config.toml``,
``history.csv``, ``report.json``, ``test.json`` (the test-split figures, once scored), ``failed.json``
(a run that diverged: the study keeps that as the run's outcome) and the run-directory marker — and,
per study, ``study.json``, ``placements.json`` and ``configs/``; never weights, plots or logs. One JSON
object per line:
``{"path": <relative to the study directory>, "text": <file contents>}``.

``pack`` writes a directory of such files, gzip-compressed: ``<name>.jsonl.gz`` holds the seeds of one run
name (the run directory's name less its ``-seedN`` suffix: ``runs/softmax-seed0`` .. ``-seed2`` go to
``softmax.jsonl.gz``), ``_study.jsonl.gz`` the study-level files; it rewrites the directory, so a file
there that the study no longer makes is removed, and leaves a file whose records did not change as it is
(the same bytes, whatever the machine's zlib). One file per name keeps each file small as a study grows;
compressed, the records are a sixth of their size, which is what the GPU tool carries with every call
(64 MiB at most, 2026-12-06). ``unpack`` reads such a directory, or a single records file, compressed or
not (plain ``.jsonl`` is the layout before 2026-12-06).

    python zoo/study_records.py pack runs/study zoo/results/cifar100-study-records
    python zoo/study_records.py unpack zoo/results/cifar100-study-records runs/study

``pack --scored-only`` keeps only the runs scored on the test split (``test.json``), the finished
timing runs (never scored) and the runs that diverged (nothing to score; never trained again): between
slices of a study on a machine that is then given back, a run that trained but was not scored, or had
not finished, would come back without its weights and could never be scored, so it is left out and the
next slice trains it again.

``merge`` adds the records a slice sent back (a records directory, or the ``rec.tgz`` that
``zoo/studies/device_slice.sh`` packs them into) to the committed ones. It only adds: every file the
committed records hold must come back unchanged or be absent (a slice that began from an older checkout
keeps nothing less), ``placements.json`` is the union of both (a run the records do not hold, such as
one an earlier slice trained but could not score, takes the slice's placement), and so is ``configs/``
but for the configs of runs the records do not hold yet: those are the plan, which the slice made anew
from more results (a tuned run's settings are its grid's best), so the slice's are kept. Anything else
that differs stops it with the differing file named, before the records are touched.

    python zoo/study_records.py merge rec.tgz zoo/results/cifar100-study5-records
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import tarfile
import tempfile
from pathlib import Path

RUN_FILES = (".keras-softmax-run", "config.toml", "history.csv", "report.json", "test.json", "failed.json")
STUDY_FILES = ("study.json", "placements.json")
STUDY_RECORDS = "_study"  # the file (less .jsonl.gz) that holds the study-level files
SUFFIX = ".jsonl.gz"  # a records file; plain ".jsonl" is read too (the layout before 2026-12-06)
TIMING_PREFIX = "timing-"  # a timing run's directory (keras_softmax/study/spec.py: timing-<name>-seed<s>)
DIVERGED = "non-finite loss"  # failed.json's reason then (keras_softmax/training/rundir.py: DIVERGED)


def record_paths(study: Path, scored_only: bool = False) -> list[Path]:
    """The files of ``study`` that a record keeps, relative to it, in a stable order; with
    ``scored_only``, of the runs that :func:`is_kept_scored` keeps."""
    paths = [Path(name) for name in STUDY_FILES if (study / name).is_file()]
    paths += sorted(p.relative_to(study) for p in (study / "configs").glob("*.toml"))
    for run in sorted(p for p in (study / "runs").iterdir() if p.is_dir()):
        if scored_only and not is_kept_scored(run):
            continue
        paths += [run.relative_to(study) / name for name in RUN_FILES if (run / name).is_file()]
    return paths


def is_kept_scored(run: Path) -> bool:
    """A run scored on the test split, a finished timing run (timing runs are never scored), or a run that
    diverged (its loss became NaN or infinite: the study's outcome for it, with nothing to score)."""
    if run.name.startswith(TIMING_PREFIX):
        return (run / "report.json").is_file()
    return (run / "test.json").is_file() or is_diverged(run)


def is_diverged(run: Path) -> bool:
    """``failed.json`` says the run's loss became NaN or infinite, and it has no report."""
    if (run / "report.json").is_file() or not (run / "failed.json").is_file():
        return False
    try:
        return json.loads((run / "failed.json").read_text(encoding="utf-8")).get("reason") == DIVERGED
    except (OSError, ValueError):
        return False


def group_of(path: Path) -> str:
    """The records file (less .jsonl.gz) that holds ``path``: its run's name without ``-seedN``, or
    ``_study`` for a study-level file."""
    if len(path.parts) > 2 and path.parts[0] == "runs":
        name = re.sub(r"-seed\d+$", "", path.parts[1])
        if name == STUDY_RECORDS:
            raise SystemExit(f"a run named {name!r} would share the study-level records file")
        return name
    return STUDY_RECORDS


def pack(study: Path, out: Path, scored_only: bool = False) -> int:
    """Write ``study``'s records into the directory ``out``, one file per run name; the number of
    files recorded."""
    groups: dict[str, list[str]] = {}
    for path in record_paths(study, scored_only):
        text = (study / path).read_text(encoding="utf-8")
        if path.name.endswith(".json"):  # compact: report.json's confusion matrix is most of it
            text = json.dumps(json.loads(text), separators=(",", ":"))
        line = json.dumps({"path": path.as_posix(), "text": text}, ensure_ascii=False)
        groups.setdefault(group_of(path), []).append(line)
    out.mkdir(parents=True, exist_ok=True)
    for stale in record_files(out):
        if stale.name not in {f"{name}{SUFFIX}" for name in groups}:
            stale.unlink()
    for name, lines in groups.items():
        text, target = "\n".join(lines) + "\n", out / f"{name}{SUFFIX}"
        if target.exists() and read_text(target) == text:
            continue  # unchanged: keep its bytes (another zlib may compress the same text differently)
        target.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return sum(len(lines) for lines in groups.values())


def record_files(records: Path) -> list[Path]:
    """The records files of a records directory, compressed or not, in a stable order."""
    return sorted(p for p in records.iterdir() if p.is_file() and p.name.endswith((SUFFIX, ".jsonl")))


def read_text(file: Path) -> str:
    """A records file's text, decompressed where its name ends in ``.gz``."""
    data = file.read_bytes()
    return (gzip.decompress(data) if file.name.endswith(".gz") else data).decode("utf-8")


def unpack(records: Path, study: Path) -> int:
    """Write the files that ``records`` (a directory from ``pack``, or one records file) holds into
    ``study``, keeping any that are there already; the number written."""
    count = 0
    for line in record_lines(records):
        item = json.loads(line)
        if _target(item, study).exists():
            continue  # never overwrite what a study has already written
        _write(item, study)
        count += 1
    return count


def merge(incoming: Path, records: Path) -> tuple[int, int]:
    """Add the records in ``incoming`` (a records directory or file, or a ``.tgz`` of a records directory)
    to the records directory ``records``; (files before, files after). Refuses, writing nothing, when a
    file both hold differs (but ``placements.json``, whose entries are united, and the config of a run the
    records do not hold, which is the slice's plan) or a recorded run's placement changes (a run the
    records do not hold takes its new placement)."""
    source = incoming  # as the user named it, for the messages
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if incoming.is_file() and incoming.name.endswith((".tgz", ".tar.gz")):
            with tarfile.open(incoming) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(scratch / "incoming", filter="data")
                else:  # Python < 3.11.4: no extraction filters; refuse what they would refuse
                    for member in archive.getmembers():
                        if not (member.isfile() or member.isdir()) or member.name.startswith(("/", "..")):
                            raise SystemExit(f"refusing {member.name!r} in {source}")
                    archive.extractall(scratch / "incoming")
            incoming = scratch / "incoming"
        union = scratch / "union"
        count = unpack(records, union) if records.exists() else 0
        recorded_runs = {p.name for p in (union / "runs").iterdir()} if (union / "runs").is_dir() else set()
        for line in record_lines(incoming):
            item = json.loads(line)
            target = _target(item, union)
            if not target.exists():
                _write(item, union)
            elif item["path"] == "placements.json":
                old, new = json.loads(target.read_text(encoding="utf-8")), json.loads(item["text"])
                # a run dropped unscored by an earlier slice may have been trained again elsewhere
                changed = sorted(k for k in old.keys() & new.keys() & recorded_runs if old[k] != new[k])
                if changed:
                    raise SystemExit(f"not merged: placements.json places {', '.join(changed)} differently in "
                                     f"{source} and {records}; nothing was changed")
                target.write_text(json.dumps({**old, **new}, separators=(",", ":")), encoding="utf-8")
            elif target.read_text(encoding="utf-8") != item["text"]:
                if _is_plan(item["path"], recorded_runs):
                    target.write_text(item["text"], encoding="utf-8")  # the plan as the slice made it
                    continue
                raise SystemExit(f"not merged: {item['path']} differs between {source} and {records} (another "
                                 "study's records, or a run recorded twice?); nothing was changed")
        total = pack(union, records)
    return count, total


def _is_plan(path: str, recorded_runs: set[str]) -> bool:
    """``configs/<run>.toml`` of a run the committed records do not hold: the study's plan for a run not
    yet trained, which changes with the results (a tuned run's settings are its grid's best), not a record."""
    parts = Path(path).parts
    return len(parts) == 2 and parts[0] == "configs" and Path(parts[1]).stem not in recorded_runs


def record_lines(records: Path):
    """The record lines of a records directory (:func:`record_files`) or of one records file."""
    for file in record_files(records) if records.is_dir() else [records]:
        yield from read_text(file).splitlines()


def _target(item: dict, study: Path) -> Path:
    """Where a record's file goes in ``study``; refuses a path outside it."""
    path = Path(item["path"])
    if path.is_absolute() or ".." in path.parts:
        raise SystemExit(f"refusing a record outside the study directory: {path}")
    return study / path


def _write(item: dict, study: Path) -> None:
    target = _target(item, study)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(item["text"], encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="study directory -> records directory (one .jsonl.gz per run name)")
    p.add_argument("study", type=Path)
    p.add_argument("records", type=Path)
    p.add_argument("--scored-only", action="store_true",
                   help="keep only runs scored on the test split (and finished timing runs)")
    u = sub.add_parser("unpack", help="records directory or file -> study directory (existing files are kept)")
    u.add_argument("records", type=Path)
    u.add_argument("study", type=Path)
    m = sub.add_parser("merge", help="add a slice's records (directory, file or .tgz) to a records directory")
    m.add_argument("incoming", type=Path)
    m.add_argument("records", type=Path)
    args = parser.parse_args(argv)
    source = args.study if args.command == "pack" else args.incoming if args.command == "merge" else args.records
    if not source.exists():
        raise SystemExit(f"not found: {source}; nothing was written")
    if args.command == "pack":
        print(f"{pack(args.study, args.records, args.scored_only)} files -> {args.records}/")
    elif args.command == "merge":
        before, after = merge(args.incoming, args.records)
        print(f"{args.records}/: {before} files before, {after} after ({after - before} added)")
    else:
        print(f"{unpack(args.records, args.study)} files -> {args.study}")


if __name__ == "__main__":
    main()
