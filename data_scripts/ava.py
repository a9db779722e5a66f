"""Prepare AVA v2.2 (Gu et al. 2018) for `mvit.data.ava.AVADataset` and the ``ava_mvit_b_16x4`` recipe.

Inputs, from the release layout: the movies (``--videos``: ``<video_id>.<mkv|mp4|webm>``, as the AVA
download script names them), the annotation folder (``--annotations``: ``ava_train_v2.2.csv``,
``ava_val_v2.2.csv``, ``ava_action_list_v2.2.pbtxt``, ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``
and, if present, ``ava_{train,val}_excluded_timestamps_v2.2.csv``), and the person boxes of a detector
(``--val-proposals``, required: evaluation scores them; ``--train-proposals``, optional: App. D.2 adds the
proposals overlapping a ground-truth box by IoU >= 0.9 to the training boxes). Every file is checked first;
a malformed line is an error naming its file and line.

Writes ``OUT/videos/<video_id>.mp4`` (seconds 900 to 1800 of each movie, the annotated 15 minutes, short
side ``--short-side``), ``OUT/videos.json`` (frame rate, frame count and start of each), and copies of the
files under the names the dataset reads: ``train.csv``, ``val.csv``, ``label_map.pbtxt``,
``evaluated_classes.pbtxt``, ``{train,val}_excluded.csv``, ``{train,val}_proposals.csv``. Resumable:
finished videos are kept (each appears whole or not at all); run it again after an interruption. Example:

    python data_scripts/ava.py --videos ava/videos --annotations ava/ava_v2.2 \\
        --val-proposals ava/ava_val_predicted_boxes.csv --train-proposals ava/ava_train_predicted_boxes.csv \\
        --out data/ava --workers 8
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from _common import ScriptError, entry_point, log, parser, require, run_all, safe_name, setup_logging

ANNOTATIONS = {
    "train.csv": "ava_train_v2.2.csv",
    "val.csv": "ava_val_v2.2.csv",
    "label_map.pbtxt": "ava_action_list_v2.2.pbtxt",
    "evaluated_classes.pbtxt": "ava_action_list_v2.2_for_activitynet_2019.pbtxt",
}
OPTIONAL = {
    "train_excluded.csv": "ava_train_excluded_timestamps_v2.2.csv",
    "val_excluded.csv": "ava_val_excluded_timestamps_v2.2.csv",
}
EXTENSIONS = (".mkv", ".mp4", ".webm")
SEGMENT = (900.0, 1800.0)  # seconds of each movie that AVA annotates


def check_files(files: dict[str, Path]) -> set[str]:
    """Parse every input file with `mvit.data.ava`'s readers; returns the video ids of the annotations."""
    from mvit.data import ava

    try:
        label_map = ava.read_label_map(files["label_map.pbtxt"])
        evaluated = ava.read_label_map(files["evaluated_classes.pbtxt"])
        unknown = sorted(set(evaluated) - set(label_map))
        if unknown:
            raise ScriptError(
                f"{files['evaluated_classes.pbtxt']}: ids {unknown} are not in {files['label_map.pbtxt']}"
            )
        ids = set()
        for split in ("train", "val"):
            ids |= {video_id for video_id, _ in ava.read_annotations(files[f"{split}.csv"], label_map)}
            if f"{split}_proposals.csv" in files:
                ava.read_proposals(files[f"{split}_proposals.csv"])
            if f"{split}_excluded.csv" in files:
                ava.read_excluded(files[f"{split}_excluded.csv"])
    except ava.AVAFormatError as error:
        raise ScriptError(str(error)) from None
    return ids


def find_movie(videos: Path, video_id: str) -> Path | None:
    for ext in EXTENSIONS:
        if (videos / f"{video_id}{ext}").is_file():
            return videos / f"{video_id}{ext}"
    return None


def cut_one(task: tuple[str, str], out: Path, short_side: int | None) -> str | None:
    """Transcode seconds 900-1800 of one movie into ``out/videos/<id>.mp4`` (kept when it exists)."""
    from mvit.data import VideoDecodeError, transcode

    video_id, source = task
    target = out / "videos" / f"{video_id}.mp4"
    if target.exists():
        return None
    try:
        transcode(source, target, start=SEGMENT[0], end=SEGMENT[1], short_side=short_side)
    except VideoDecodeError as error:
        return str(error)
    return None


def manifest_entry(path: Path, source: Path, out: Path) -> dict:
    """The videos.json entry of one cut movie. The frame rate is the source movie's: the cut keeps every frame
    at that rate (its own container's timestamps are not relied on)."""
    from mvit.data import open_video

    with open_video(source, backend="pyav") as movie, open_video(path, backend="pyav") as cut:
        return {
            "path": str(path.relative_to(out)),
            "fps": float(movie.fps),
            "num_frames": len(cut),
            "start": SEGMENT[0],
        }


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--videos", type=Path, required=True, help="folder of the movies, <video_id>.<mkv|mp4|webm>")
    p.add_argument("--annotations", type=Path, required=True, help="folder of the ava_*_v2.2 files")
    p.add_argument("--val-proposals", type=Path, required=True, help="a detector's person boxes on the val keyframes")
    p.add_argument("--train-proposals", type=Path, default=None, help="a detector's person boxes on train keyframes")
    p.add_argument("--short-side", type=int, default=320, help="resize the short side (default 320)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    args = p.parse_args(argv)
    setup_logging()
    hint = "download AVA v2.2 (https://research.google.com/ava/download.html) and unpack it"
    require(args.videos, "movie folder", hint)
    files = {name: require(args.annotations / source, "annotation file", hint) for name, source in ANNOTATIONS.items()}
    files.update({name: args.annotations / s for name, s in OPTIONAL.items() if (args.annotations / s).is_file()})
    files["val_proposals.csv"] = require(args.val_proposals, "proposal file", "pass a detector's boxes (see --help)")
    if args.train_proposals is not None:
        files["train_proposals.csv"] = require(args.train_proposals, "proposal file", "check --train-proposals")
    ids = sorted(check_files(files))
    sources = {}
    for video_id in ids:
        safe_name(video_id, "the annotations", "video id")
        sources[video_id] = find_movie(args.videos, video_id)
    missing = [video_id for video_id, source in sources.items() if source is None]
    if missing:
        raise ScriptError(
            f"{len(missing)} of {len(ids)} annotated movies are not in {args.videos} (e.g. "
            f"{', '.join(missing[:5])}); expected <video_id>{'|'.join(EXTENSIONS)}: download them first"
        )
    todo = [(v, str(s)) for v, s in sources.items() if not (args.out / "videos" / f"{v}.mp4").exists()]
    log.info(f"{len(ids)} movies, {len(todo)} to cut (seconds 900-1800); files: {', '.join(sorted(files))}")
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    (args.out / "videos").mkdir(parents=True, exist_ok=True)
    failed = run_all(todo, functools.partial(cut_one, out=args.out, short_side=args.short_side), args.workers)
    if failed:
        listing = "".join(f"\n  {video_id}: {reason}" for (video_id, _), reason in failed[:20])
        raise ScriptError(f"{len(failed)} movies could not be cut (the others are kept; run again to retry):{listing}")
    manifest = {
        video_id: manifest_entry(args.out / "videos" / f"{video_id}.mp4", sources[video_id], args.out)
        for video_id in ids
    }
    tmp = args.out / "videos.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(args.out / "videos.json")
    for name, source in files.items():
        shutil.copyfile(source, args.out / name)
    log.info(f"wrote {args.out}: {len(manifest)} videos, " + ", ".join(sorted(files)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
