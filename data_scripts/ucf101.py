"""Prepare UCF-101 (Soomro et al. 2012) with its official train/test splits for `mvit.data.VideoDataset`.

Unpack ``UCF101.rar`` (folders ``<Class>/v_<Class>_gXX_cXX.avi``) and the split archive
``UCF101TrainTestSplits-RecognitionTask.zip`` (``ucfTrainTestlist/``: ``classInd.txt``,
``trainlist0{1,2,3}.txt``, ``testlist0{1,2,3}.txt``). This script checks that every listed video is
there and writes ``OUT/train_split<k>.csv`` and ``OUT/test_split<k>.csv`` (``<Class>/<file>.avi
<label>``, paths relative to --videos, labels from 0) and ``OUT/classes.txt``. The videos are used as
they are (320 x 240). Existing annotation files are kept unless --force. Example:

    python data_scripts/ucf101.py --videos UCF-101 --splits ucfTrainTestlist --out data/ucf101
"""

from __future__ import annotations

from pathlib import Path

from _common import log, parser, require, setup_logging, write_lines


def read_classes(path: Path) -> dict[str, int]:
    """classInd.txt (``1 ApplyEyeMakeup`` per line) -> {class name: label from 0}."""
    classes = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise SystemExit(f"error: {path}:{number}: expected '<index> <ClassName>', got {line!r}")
        classes[fields[1]] = int(fields[0]) - 1
    return classes


def read_list(path: Path, classes: dict[str, int]) -> list[tuple[str, int]]:
    """A train or test list -> [(relative path, label)]; the label comes from the class folder."""
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        relative = line.split()[0]
        name = relative.split("/")[0]
        if name not in classes:
            raise SystemExit(f"error: {path}:{number}: class folder {name!r} is not in classInd.txt")
        samples.append((relative, classes[name]))
    return samples


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--videos", type=Path, required=True, help="the unpacked UCF-101 folder")
    p.add_argument("--splits", type=Path, required=True, help="the ucfTrainTestlist folder")
    p.add_argument("--split", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3], help="which splits")
    p.add_argument("--force", action="store_true", help="rewrite annotation files that exist")
    args = p.parse_args(argv)
    setup_logging()
    hint = "download UCF-101 and its splits from the University of Central Florida and unpack them"
    require(args.videos, "video folder", hint)
    classes = read_classes(require(args.splits / "classInd.txt", "split file", hint))
    outputs = {}
    for k in args.split:
        for kind in ("train", "test"):
            samples = read_list(require(args.splits / f"{kind}list0{k}.txt", "split file", hint), classes)
            missing = [path for path, _ in samples if not (args.videos / path).is_file()]
            if missing:
                raise SystemExit(f"error: {len(missing)} videos of {kind}list0{k}.txt are not in {args.videos}, "
                                 f"e.g. {missing[:3]}; is the folder complete?")
            outputs[args.out / f"{kind}_split{k}.csv"] = [f"{path} {label}" for path, label in samples]
    todo = {path: lines for path, lines in outputs.items() if args.force or not path.exists()}
    log.info(f"{len(classes)} classes; {len(todo)} of {len(outputs)} annotation files to write")
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    write_lines(args.out / "classes.txt", sorted(classes, key=classes.get))
    for path, lines in todo.items():
        log.info(f"{path}: {write_lines(path, lines)} videos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
