"""Prepare UCF-101 (Soomro et al. 2012) with one of its official train/test splits for `mvit.data.VideoDataset`.

Unpack ``UCF101.rar`` (folders ``<Class>/v_<Class>_gXX_cXX.avi``) and the split archive
``UCF101TrainTestSplits-RecognitionTask.zip`` (``ucfTrainTestlist/``: ``classInd.txt``,
``trainlist0{1,2,3}.txt``, ``testlist0{1,2,3}.txt``). This script checks that every listed video is
there, links the video folder as ``OUT/videos`` and writes what the ``ucf101_mvit_b_16x4`` recipe reads
with ``data.root=OUT``: ``OUT/train.csv`` (the split's train list) and ``OUT/val.csv`` (its test list),
``videos/<Class>/<file>.avi <label>`` per line with labels from 0, and ``OUT/classes.txt``. The videos
are used as they are (320 x 240). Existing annotation files are kept unless --force. For another split,
use another --out. Example:

    python data_scripts/ucf101.py --videos UCF-101 --splits ucfTrainTestlist --split 1 --out data/ucf101
"""

from __future__ import annotations

from pathlib import Path

from _common import (
    ScriptError,
    entry_point,
    link,
    log,
    parser,
    read_lines,
    require,
    safe_name,
    setup_logging,
    write_annotations,
    write_lines,
)


def read_classes(path: Path) -> dict[str, int]:
    """classInd.txt (``1 ApplyEyeMakeup`` per line) -> {class name: label from 0}."""
    classes = {}
    for number, line in read_lines(path, "'<index> <ClassName>' lines"):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ScriptError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        classes[safe_name(fields[1], f"{path}:{number}", "class name")] = int(fields[0]) - 1
    if sorted(classes.values()) != list(range(len(classes))):
        raise ScriptError(f"{path}: the class indices must be 1..{len(classes)}, each once")
    return classes


def read_list(path: Path, classes: dict[str, int]) -> list[tuple[str, int]]:
    """A train or test list -> [(``<Class>/<file>``, label)]; the label comes from the class folder."""
    samples = []
    for number, line in read_lines(path, "'<Class>/<file>.avi [label]' lines"):
        where = f"{path}:{number}"
        parts = line.split()[0].split("/")
        if len(parts) != 2:
            raise ScriptError(f"{where}: expected '<Class>/<file>.avi', got {line!r}")
        name, file = parts
        if name not in classes:
            raise ScriptError(f"{where}: class folder {name!r} is not in classInd.txt")
        samples.append((f"{name}/{safe_name(file, where, 'file name')}", classes[name]))
    return samples


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--videos", type=Path, required=True, help="the unpacked UCF-101 folder")
    p.add_argument("--splits", type=Path, required=True, help="the ucfTrainTestlist folder")
    p.add_argument("--split", type=int, default=1, choices=[1, 2, 3], help="which official split (default 1)")
    p.add_argument("--force", action="store_true", help="rewrite annotation files that exist")
    args = p.parse_args(argv)
    setup_logging()
    hint = "download UCF-101 and its splits from the University of Central Florida and unpack them"
    require(args.videos, "video folder", hint)
    classes = read_classes(require(args.splits / "classInd.txt", "split file", hint))
    outputs = {}
    for kind, name in (("train", "train"), ("test", "val")):
        samples = read_list(require(args.splits / f"{kind}list0{args.split}.txt", "split file", hint), classes)
        missing = [path for path, _ in samples if not (args.videos / path).is_file()]
        if missing:
            raise ScriptError(
                f"{len(missing)} videos of {kind}list0{args.split}.txt are not in {args.videos}, "
                f"e.g. {missing[:3]}; is the folder complete?"
            )
        outputs[args.out / f"{name}.csv"] = [(f"videos/{path}", label) for path, label in samples]
    todo = {path: samples for path, samples in outputs.items() if args.force or not path.exists()}
    log.info(f"{len(classes)} classes, split {args.split}; {len(todo)} of {len(outputs)} annotation files to write")
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    link(args.out / "videos", args.videos)
    write_lines(args.out / "classes.txt", sorted(classes, key=classes.get))
    for path, samples in todo.items():
        log.info(f"{path}: {write_annotations(path, samples)} videos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
