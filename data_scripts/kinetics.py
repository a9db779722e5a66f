"""Prepare Kinetics-400 or Kinetics-600 (Kay et al. 2017) for `mvit.data.VideoDataset`.

From the official annotation CSVs (columns ``label,youtube_id,time_start,time_end,split``), for each
clip: download the YouTube video into --raw-dir (with yt-dlp, or skip this with --skip-download when
the videos are already there as ``<youtube_id>.<ext>``), cut seconds [time_start, time_end), resize the
short side to --short-side (default 320) and write
``OUT/<split>/<class>/<youtube_id>_<start>_<end>.mp4`` with PyAV (no ffmpeg binary needed). Then write
``OUT/train.csv``, ``OUT/val.csv``, ``OUT/test.csv`` (``<path> <label>`` lines) and ``OUT/classes.txt``
(sorted class names; line i is label i), and list what failed in ``OUT/failed.txt``.

Resumable: clips already written are skipped, so run it again after an interruption or to retry
failed downloads. A row whose youtube_id is not a plain name (``../x``) or whose times are not
finite numbers with start < end is refused, naming its line. Example:

    python data_scripts/kinetics.py --csv kinetics400/train.csv kinetics400/validate.csv \\
        --raw-dir raw/ --out data/k400 --workers 16
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
from pathlib import Path
from typing import Callable, NamedTuple

from _common import (
    ScriptError,
    entry_point,
    log,
    parser,
    read_csv_rows,
    require,
    run_all,
    safe_name,
    setup_logging,
    slug,
    write_annotations,
    write_lines,
)

SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}
Downloader = Callable[[str, Path], None]


class Clip(NamedTuple):
    youtube_id: str
    start: float
    end: float
    split: str  # train / val / test
    label: str

    @property
    def path(self) -> str:
        return f"{self.split}/{slug(self.label)}/{self.youtube_id}_{int(self.start):06d}_{int(self.end):06d}.mp4"


def read_csv(path: Path) -> list[Clip]:
    """Clips of an official Kinetics CSV. Rows without a label (some test lists) are skipped."""
    what = "an official Kinetics CSV with header label,youtube_id,time_start,time_end,split"
    clips = []
    for number, row in read_csv_rows(path, {"youtube_id", "time_start", "time_end"}, what):
        where = f"{path}:{number}"
        split = SPLIT_NAMES.get(row.get("split") or path.stem)
        if split is None:
            raise ScriptError(f"{where}: unknown split {row.get('split')!r}; expected one of {sorted(SPLIT_NAMES)}")
        if not row.get("label"):
            continue
        youtube_id = safe_name(row["youtube_id"], where, "youtube_id")
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise ScriptError(
                f"{where}: time_start={row['time_start']!r}, time_end={row['time_end']!r} must be "
                "numbers of seconds with 0 <= time_start < time_end"
            )
        clips.append(Clip(youtube_id, start, end, split, row["label"]))
    return clips


def find_raw(raw_dir: Path, youtube_id: str) -> Path | None:
    matches = sorted(p for p in raw_dir.glob(f"{youtube_id}.*") if not p.name.endswith((".part", ".tmp")))
    return matches[0] if matches else None


def yt_dlp_download(youtube_id: str, raw_dir: Path) -> None:
    """Download one YouTube video with yt-dlp into ``raw_dir/<youtube_id>.<ext>``."""
    if shutil.which("yt-dlp") is None:
        raise RuntimeError(
            "yt-dlp is not installed (pip install yt-dlp); or download the videos yourself "
            "into --raw-dir as <youtube_id>.mp4 and pass --skip-download"
        )
    subprocess.run(
        [
            "yt-dlp",
            "--quiet",
            "--no-warnings",
            "-f",
            "mp4/bestvideo",
            "-o",
            str(raw_dir / f"{youtube_id}.%(ext)s"),
            f"https://www.youtube.com/watch?v={youtube_id}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


def prepare_clip(clip: Clip, raw_dir: Path, out: Path, short_side: int, download: Downloader | None) -> str | None:
    """Download (unless `download` is None), trim and resize one clip; None on success, else why not."""
    from mvit.data import VideoDecodeError, transcode

    target = out / clip.path
    if target.exists():
        return None
    raw = find_raw(raw_dir, clip.youtube_id)
    if raw is None:
        if download is None:
            return f"not in {raw_dir} (expected {clip.youtube_id}.mp4; --skip-download was given)"
        try:
            download(clip.youtube_id, raw_dir)
        except Exception as error:  # removed or private videos are common: report, go on
            return f"download failed: {error}"
        raw = find_raw(raw_dir, clip.youtube_id)
        if raw is None:
            return "download produced no file"
    try:
        transcode(raw, target, clip.start, clip.end, short_side)
    except VideoDecodeError as error:
        return f"cannot trim: {error}"
    return None


@entry_point
def main(argv: list[str] | None = None, download: Downloader | None = yt_dlp_download) -> int:
    p = parser(__doc__)
    p.add_argument("--csv", type=Path, nargs="+", required=True, help="official annotation CSV(s)")
    p.add_argument("--raw-dir", type=Path, required=True, help="where downloaded videos are (or go)")
    p.add_argument("--skip-download", action="store_true", help="use only videos already in --raw-dir")
    p.add_argument("--short-side", type=int, default=320, help="short side of the written clips (default 320)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    args = p.parse_args(argv)
    setup_logging()
    clips = [
        clip
        for path in args.csv
        for clip in read_csv(
            require(path, "annotation CSV", "get it from the Kinetics release (train.csv, validate.csv)")
        )
    ]
    if not clips:
        raise ScriptError(f"no labelled clips in {[str(c) for c in args.csv]}")
    classes = sorted({clip.label for clip in clips})
    todo = [clip for clip in clips if not (args.out / clip.path).exists()]
    have_raw = 0 if not args.raw_dir.is_dir() else sum(find_raw(args.raw_dir, c.youtube_id) is not None for c in todo)
    log.info(
        f"{len(clips)} clips in {len(classes)} classes; {len(clips) - len(todo)} already prepared, "
        f"{len(todo)} to do ({have_raw} already downloaded)"
    )
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    if args.skip_download:
        require(args.raw_dir, "--raw-dir", "point it at the folder of downloaded videos")
    args.raw_dir.mkdir(parents=True, exist_ok=True)
    work = functools.partial(
        prepare_clip,
        raw_dir=args.raw_dir,
        out=args.out,
        short_side=args.short_side,
        download=None if args.skip_download else download,
    )
    failed = run_all(todo, work, args.workers)
    index = {name: i for i, name in enumerate(classes)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_lines(args.out / "classes.txt", classes)
    for split in sorted({clip.split for clip in clips}):
        count = write_annotations(
            args.out / f"{split}.csv",
            ((c.path, index[c.label]) for c in clips if c.split == split and (args.out / c.path).exists()),
        )
        log.info(f"{args.out / f'{split}.csv'}: {count} clips")
    write_lines(args.out / "failed.txt", (f"{clip.youtube_id} {clip.path}: {reason}" for clip, reason in failed))
    log.info(f"{len(failed)} clips failed (listed in {args.out / 'failed.txt'}); run again to retry them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
