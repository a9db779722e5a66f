"""Prepare Charades (Sigurdsson et al. 2016) from its official release for `mvit.data.CharadesDataset`.

Download the release from its publisher (the Allen Institute for AI): the videos ``Charades_v1_480/<id>.mp4``
(480p) and the annotations ``Charades/`` with ``Charades_v1_train.csv``, ``Charades_v1_test.csv`` and
``Charades_v1_classes.txt``. This script checks every annotation row (an error names the file and line: a
missing column, a bad class id, an unparsable time, a start after its end), checks which listed videos are
there, and writes what the ``charades_mvit_b_16x4`` recipe reads with ``data.root=OUT``: ``OUT/train.csv``
and ``OUT/val.csv`` (the official rows of Charades_v1_train.csv and Charades_v1_test.csv whose video exists,
all columns kept), ``OUT/videos/`` (a link to the video folder, or with --short-side the videos re-encoded
with that short side, e.g. 256) and ``OUT/classes.txt`` (the 157 names; line i is class ci). Videos that are
missing are listed in ``OUT/missing.txt``, those that failed to re-encode in ``OUT/failed.txt``.
Resumable: re-encoded videos already there are kept. Example:

    python data_scripts/charades.py --videos Charades_v1_480 --annotations Charades --out data/charades \\
        --short-side 256 --workers 16
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

from _common import (
    ScriptError,
    entry_point,
    link,
    log,
    parser,
    require,
    run_all,
    setup_logging,
    transcode_video,
    write_lines,
)

SPLITS = {"train": "Charades_v1_train.csv", "val": "Charades_v1_test.csv"}
CLASSES = "Charades_v1_classes.txt"


def read_split(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(header, rows)`` of an official annotation file, every row checked by `mvit.data.charades`."""
    from mvit.data.charades import read_charades_csv

    try:
        read_charades_csv(path)
    except ValueError as error:  # AnnotationError: names the file and line
        raise ScriptError(str(error)) from None
    reader = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
    return list(reader.fieldnames or ()), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> int:
    """Write the official `rows` (all columns) to `path` atomically; returns how many."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return len(rows)


def transcode_one(video_id: str, videos: Path, out: Path, short_side: int) -> str | None:
    return transcode_video(videos / f"{video_id}.mp4", out / "videos" / f"{video_id}.mp4", short_side)


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--videos", type=Path, required=True, help="the release's video folder (Charades_v1_480/<id>.mp4)")
    p.add_argument(
        "--annotations", type=Path, required=True, help="folder of Charades_v1_train.csv, _test.csv, _classes.txt"
    )
    p.add_argument("--short-side", type=int, default=None, help="re-encode with this short side (default: link)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes for re-encoding (default 1)")
    args = p.parse_args(argv)
    setup_logging()
    hint = "download Charades (videos at 480p and the annotations) from its publisher and unpack it"
    require(args.videos, "video folder", hint)
    if args.short_side is not None and args.short_side < 2:
        raise ScriptError(f"--short-side must be at least 2 pixels, got {args.short_side}")
    splits = {
        split: read_split(require(args.annotations / name, "annotation file", hint)) for split, name in SPLITS.items()
    }
    classes_file = args.annotations / CLASSES
    classes = None
    if classes_file.exists():
        from mvit.data.charades import read_classes

        try:
            classes = read_classes(classes_file)
        except ValueError as error:
            raise ScriptError(str(error)) from None
    present, missing = {}, []
    for split, (_, rows) in splits.items():
        present[split] = [row for row in rows if (args.videos / f"{row['id']}.mp4").is_file()]
        missing += [f"{split}: {row['id']}.mp4" for row in rows if not (args.videos / f"{row['id']}.mp4").is_file()]
    ids = [row["id"] for rows in present.values() for row in rows]
    todo = [] if args.short_side is None else [i for i in ids if not (args.out / "videos" / f"{i}.mp4").exists()]
    log.info(
        f"train {len(present['train'])} of {len(splits['train'][1])} videos, val {len(present['val'])} of "
        f"{len(splits['val'][1])} present ({len(missing)} missing); "
        + (
            f"{len(todo)} to re-encode at short side {args.short_side}"
            if args.short_side
            else "videos linked as they are"
        )
    )
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[str, str]] = []
    if args.short_side is None:
        link(args.out / "videos", args.videos)
    else:
        if (args.out / "videos").is_symlink():
            raise ScriptError(
                f"{args.out / 'videos'} is a link (an earlier run without --short-side); use another --out"
            )
        (args.out / "videos").mkdir(exist_ok=True)
        work = functools.partial(transcode_one, videos=args.videos, out=args.out, short_side=args.short_side)
        failed = run_all(todo, work, args.workers)
    bad = {video_id for video_id, _ in failed}
    for split, rows in present.items():
        kept = [row for row in rows if row["id"] not in bad]
        count = write_rows(args.out / f"{split}.csv", splits[split][0], kept)
        log.info(f"{args.out / f'{split}.csv'}: {count} videos")
    if classes is not None:
        write_lines(args.out / "classes.txt", classes)
    write_lines(args.out / "missing.txt", missing)
    write_lines(args.out / "failed.txt", (f"{video_id}: {reason}" for video_id, reason in failed))
    log.info(f"{len(missing)} videos missing, {len(failed)} failed to re-encode (listed in {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
