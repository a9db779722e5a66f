"""Arrange ImageNet-1K (ILSVRC 2012) as ``OUT/{train,val}/<wnid>/<image>.JPEG`` for
`mvit.data.ImageFolderDataset`.

Download the archives from image-net.org yourself (a registration is needed). Then:

- training images: --train is either the unpacked ``ILSVRC2012_img_train.tar``, i.e. one
  ``<wnid>.tar`` per class, which is extracted to ``OUT/train/<wnid>/``, or a folder that already has
  one sub-folder per class, which is linked as ``OUT/train``;
- validation images: --val is the folder of the 50,000 ``ILSVRC2012_val_*.JPEG`` files, --val-labels
  either Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``) or a text file of
  ``<image file> <wnid>`` lines; each image is linked (or copied) to ``OUT/val/<wnid>/``.

Resumable: classes already extracted (marked by ``.done``) and images already placed are skipped.
Class names must be wnids (``n`` and 8 digits) and image names plain file names: anything else (a
hostile ``n/../../x``) is refused, naming its line, before anything is written. Example:

    python data_scripts/imagenet.py --train ILSVRC2012_img_train --val ILSVRC2012_img_val \\
        --val-labels LOC_val_solution.csv --out data/imagenet
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from pathlib import Path

from _common import ScriptError, entry_point, log, parser, read_csv_rows, read_lines, require, safe_name, setup_logging

WNID = re.compile(r"n\d{8}")


def wnid(name: str, where: str) -> str:
    """`name` if it is a WordNet id like ``n01440764``, else an error naming `where` it came from."""
    if not WNID.fullmatch(name):
        raise ScriptError(
            f"{where}: {name!r} is not an ImageNet class id ('n' and 8 digits, e.g. n01440764); "
            "fix or remove that entry"
        )
    return name


def read_val_labels(path: Path) -> dict[str, str]:
    """{image file name: wnid} from LOC_val_solution.csv or ``<image> <wnid>`` lines."""
    labels = {}
    if path.suffix == ".csv":
        for number, row in read_csv_rows(
            path, {"ImageId", "PredictionString"}, "LOC_val_solution.csv (columns ImageId,PredictionString)"
        ):
            where = f"{path}:{number}"
            fields = row["PredictionString"].split()
            if not fields:
                raise ScriptError(f"{where}: empty PredictionString")
            labels[safe_name(row["ImageId"], where, "ImageId") + ".JPEG"] = wnid(fields[0], where)
    else:
        for number, line in read_lines(path, "'<image file> <wnid>' lines"):
            where = f"{path}:{number}"
            fields = line.split()
            if len(fields) != 2:
                raise ScriptError(f"{where}: expected '<image file> <wnid>', got {line!r}")
            labels[safe_name(fields[0], where, "image file")] = wnid(fields[1], where)
    return labels


def place(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        target.symlink_to(source.resolve())
    elif mode == "hardlink":
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def prepare_train(train: Path, out: Path, dry_run: bool) -> None:
    tars = [tar for tar in sorted(train.glob("n*.tar")) if wnid(tar.stem, str(tar))]
    if not tars:
        if not any(entry.is_dir() for entry in train.iterdir()):
            raise ScriptError(f"{train} has neither <wnid>.tar files nor class folders")
        log.info(f"train: {train} already has class folders; linking it as {out / 'train'}")
        if not dry_run and not (out / "train").exists():
            out.mkdir(parents=True, exist_ok=True)
            (out / "train").symlink_to(train.resolve(), target_is_directory=True)
        return
    todo = [tar for tar in tars if not (out / "train" / tar.stem / ".done").exists()]
    log.info(f"train: {len(tars)} class archives, {len(todo)} to extract")
    if dry_run:
        return
    for tar in todo:
        folder = out / "train" / tar.stem
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tar) as archive:
                archive.extractall(folder, filter="data")
        except tarfile.TarError as error:  # also an archive member that would land outside the folder
            raise ScriptError(f"{tar} is not a readable, safe tar archive ({error}); download it again") from None
        (folder / ".done").touch()


def prepare_val(val: Path, labels: dict[str, str], out: Path, mode: str, dry_run: bool) -> None:
    images = sorted(val.glob("*.JPEG"))
    unlabelled = [image.name for image in images if image.name not in labels]
    if unlabelled:
        raise ScriptError(
            f"{len(unlabelled)} images in {val} have no label, e.g. {unlabelled[:3]}; "
            "is --val-labels the ILSVRC 2012 validation list?"
        )
    todo = [image for image in images if not (out / "val" / labels[image.name] / image.name).exists()]
    log.info(f"val: {len(images)} images in {len(set(labels.values()))} classes, {len(todo)} to place ({mode})")
    if dry_run:
        return
    for image in todo:
        place(image, out / "val" / labels[image.name] / image.name, mode)


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--train", type=Path, help="training images: <wnid>.tar files or class folders")
    p.add_argument("--val", type=Path, help="folder of the validation images")
    p.add_argument("--val-labels", type=Path, help="LOC_val_solution.csv or '<image> <wnid>' lines")
    p.add_argument(
        "--mode",
        choices=("symlink", "hardlink", "copy"),
        default="symlink",
        help="how validation images are placed (default symlink)",
    )
    args = p.parse_args(argv)
    setup_logging()
    if args.train is None and args.val is None:
        p.error("give --train, --val (with --val-labels), or both")
    if args.val is not None and args.val_labels is None:
        p.error("--val needs --val-labels")
    hint = "download ILSVRC 2012 from image-net.org and unpack it"
    labels = None if args.val is None else read_val_labels(require(args.val_labels, "label file", hint))
    if args.train is not None:  # after every input is checked: an error leaves nothing half written
        prepare_train(require(args.train, "training folder", hint), args.out, args.dry_run)
    if labels is not None:
        prepare_val(require(args.val, "validation folder", hint), labels, args.out, args.mode, args.dry_run)
    log.info("dry run: nothing written" if args.dry_run else f"done: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
