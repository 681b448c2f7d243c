"""Pack a study directory's run records into one text file, or unpack them to continue the study.

A record keeps, per run, what the study's report and its resume logic read — ``config.toml``,
``history.csv``, ``report.json`` and the run-directory marker — and, per study, ``study.json``,
``placements.json`` and ``configs/``; never weights, plots or logs. One JSON object per line:
``{"path": <relative to the study directory>, "text": <file contents>}``.

    python zoo/study_records.py pack runs/study zoo/results/cifar100-study-records.jsonl
    python zoo/study_records.py unpack zoo/results/cifar100-study-records.jsonl runs/study
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUN_FILES = (".keras-softmax-run", "config.toml", "history.csv", "report.json")
STUDY_FILES = ("study.json", "placements.json")


def record_paths(study: Path) -> list[Path]:
    """The files of ``study`` that a record keeps, relative to it, in a stable order."""
    paths = [Path(name) for name in STUDY_FILES if (study / name).is_file()]
    paths += sorted(p.relative_to(study) for p in (study / "configs").glob("*.toml"))
    for run in sorted(p for p in (study / "runs").iterdir() if p.is_dir()):
        paths += [run.relative_to(study) / name for name in RUN_FILES if (run / name).is_file()]
    return paths


def pack(study: Path, out: Path) -> int:
    lines = []
    for path in record_paths(study):
        text = (study / path).read_text(encoding="utf-8")
        if path.name.endswith(".json"):  # compact: report.json's confusion matrix is most of it
            text = json.dumps(json.loads(text), separators=(",", ":"))
        lines.append(json.dumps({"path": path.as_posix(), "text": text}, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def unpack(records: Path, study: Path) -> int:
    count = 0
    for line in records.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        path = Path(item["path"])
        if path.is_absolute() or ".." in path.parts:
            raise SystemExit(f"refusing a record outside the study directory: {path}")
        target = study / path
        if target.exists():
            continue  # never overwrite what a study has already written
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item["text"], encoding="utf-8")
        count += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="study directory -> records file")
    p.add_argument("study", type=Path)
    p.add_argument("records", type=Path)
    u = sub.add_parser("unpack", help="records file -> study directory (existing files are kept)")
    u.add_argument("records", type=Path)
    u.add_argument("study", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        print(f"{pack(args.study, args.records)} files -> {args.records}")
    else:
        print(f"{unpack(args.records, args.study)} files -> {args.study}")


if __name__ == "__main__":
    main()
