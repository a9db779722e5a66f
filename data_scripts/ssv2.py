"""Prepare Something-Something v2 (Goyal et al. 2017) for `mvit.data.VideoDataset`.

The dataset cannot be downloaded by a script: get it from its publisher (a registration is needed),
unpack the videos (``<id>.webm``) into one folder and keep the label files
``something-something-v2-labels.json``, ``-train.json`` and ``-validation.json`` in another.

This script re-encodes each webm (VP9) as H.264 mp4, which decord and PyAV seek in much faster, into
``OUT/videos/<id>.mp4`` (--short-side resizes as well; --no-transcode keeps the webm files, links their
folder as ``OUT/webm`` and points the annotations at ``webm/<id>.webm``), and writes ``OUT/train.csv``,
``OUT/val.csv`` (``<path> <label>`` lines, paths relative to OUT) and ``OUT/classes.txt`` (the 174
templates; line i is label i). Train with ``sampling="segment"`` and ``Augmentation(flip=False)``: left
and right are part of the labels (the ``ssv2_mvit_b_16x4`` recipe does both, with ``data.root=OUT``).
Resumable: videos already written are skipped. Example:

    python data_scripts/ssv2.py --videos ssv2/20bn-something-something-v2 --labels ssv2/labels \\
        --out data/ssv2 --workers 16
"""

from __future__ import annotations

import functools
from pathlib import Path

from _common import (
    ScriptError,
    entry_point,
    line_of_entries,
    link,
    log,
    parser,
    read_json,
    require,
    run_all,
    safe_name,
    setup_logging,
    transcode_video,
    write_annotations,
    write_lines,
)

LABEL_FILES = {
    "classes": "something-something-v2-labels.json",
    "train": "something-something-v2-train.json",
    "val": "something-something-v2-validation.json",
}


def read_classes(path: Path) -> dict[str, int]:
    """The labels file ``{"template": "index", ...}`` -> {template: label}."""
    names = read_json(path, 'an object {"<template>": "<index>", ...}')
    if not isinstance(names, dict) or not names:
        raise ScriptError(
            f'{path}: expected a JSON object {{"<template>": "<index>", ...}}, got {type(names).__name__}'
        )
    classes = {}
    for name, index in names.items():
        if not str(index).isdigit():
            raise ScriptError(f"{path}: the index of {name!r} is {index!r}, not a non-negative integer")
        classes[name] = int(index)
    if sorted(classes.values()) != list(range(len(classes))):
        raise ScriptError(f"{path}: the indices must be 0..{len(classes) - 1}, each once")
    return classes


def read_split(path: Path, classes: dict[str, int]) -> list[tuple[str, int]]:
    """``[(video id, label), ...]`` of a split file; the label is the entry's template without brackets."""
    entries = read_json(path, 'an array of {"id": ..., "template": ...} entries')
    if not isinstance(entries, list):
        raise ScriptError(f'{path}: expected a JSON array of {{"id": ..., "template": ...}} entries')
    lines = line_of_entries(path)
    samples = []
    for number, (line, entry) in enumerate(zip(lines, entries)):
        where = f"{path}:{line} (entry {number})"
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("template"), str):
            raise ScriptError(f'{where}: expected an object with "id" and "template", got {str(entry)[:200]}')
        template = entry["template"].replace("[", "").replace("]", "")
        if template not in classes:
            raise ScriptError(
                f"{where}: the template {template!r} is not in {LABEL_FILES['classes']}; is "
                f"{path.name} from the same release?"
            )
        samples.append((safe_name(str(entry["id"]), where, "video id"), classes[template]))
    return samples


def transcode_one(video_id: str, videos: Path, out: Path, short_side: int | None) -> str | None:
    return transcode_video(videos / f"{video_id}.webm", out / "videos" / f"{video_id}.mp4", short_side)


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--videos", type=Path, required=True, help="folder of <id>.webm files")
    p.add_argument("--labels", type=Path, required=True, help="folder of the something-something-v2-*.json files")
    p.add_argument("--short-side", type=int, default=None, help="resize the short side (default: keep the size)")
    p.add_argument("--no-transcode", action="store_true", help="keep the webm files; annotations point at them")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    args = p.parse_args(argv)
    setup_logging()
    hint = "download Something-Something v2 from its publisher and unpack it"
    require(args.videos, "video folder", hint)
    classes = read_classes(require(args.labels / LABEL_FILES["classes"], "label file", hint))
    splits = {
        split: read_split(require(args.labels / LABEL_FILES[split], "label file", hint), classes)
        for split in ("train", "val")
    }
    ids = [video_id for samples in splits.values() for video_id, _ in samples]
    if args.no_transcode:
        relative = {video_id: f"webm/{video_id}.webm" for video_id in ids}
        todo = []
    else:
        relative = {video_id: f"videos/{video_id}.mp4" for video_id in ids}
        todo = [video_id for video_id in ids if not (args.out / relative[video_id]).exists()]
    log.info(
        f"{len(classes)} classes; train {len(splits['train'])}, val {len(splits['val'])} videos; "
        f"{len(todo)} to transcode"
    )
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.no_transcode:
        link(args.out / "webm", args.videos)
    failed = run_all(
        todo,
        functools.partial(transcode_one, videos=args.videos, out=args.out, short_side=args.short_side),
        args.workers,
    )
    write_lines(args.out / "classes.txt", sorted(classes, key=classes.get))
    for split, samples in splits.items():
        count = write_annotations(
            args.out / f"{split}.csv",
            ((relative[v], label) for v, label in samples if (args.out / relative[v]).exists()),
        )
        log.info(f"{args.out / f'{split}.csv'}: {count} videos (paths relative to {args.out})")
    write_lines(args.out / "failed.txt", (f"{video_id}: {reason}" for video_id, reason in failed))
    log.info(f"{len(failed)} videos failed (listed in {args.out / 'failed.txt'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
