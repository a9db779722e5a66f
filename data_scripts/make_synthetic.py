"""Write the synthetic temporal video dataset (`mvit.data.synthetic`) as mp4 files.

Ten classes that only the order of frames tells apart (moving right/left, moving down/up,
approaching/receding, appearing/disappearing, getting brighter/darker), drawn deterministically from
--seed. Writes ``OUT/{train,val}/NNNNNN.mp4``, ``OUT/train.csv``, ``OUT/val.csv`` and
``OUT/classes.txt``, ready for ``VideoDataset("OUT/train.csv", "OUT", ...)`` (use
``Augmentation(flip=False)``: a flip turns "moving right" into "moving left"). Resumable: existing
videos are kept. Example:

    python data_scripts/make_synthetic.py --out data/synthetic --num-train 2000 --num-val 400
"""

from __future__ import annotations

import time

from _common import ScriptError, entry_point, log, parser, setup_logging


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--num-train", type=int, default=500, help="training videos (default 500)")
    p.add_argument("--num-val", type=int, default=100, help="validation videos (default 100)")
    p.add_argument("--num-frames", type=int, default=16, help="frames per video (default 16)")
    p.add_argument("--size", type=int, default=64, help="height = width in pixels, even (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    setup_logging()
    if min(args.num_train, args.num_val) < 0:
        p.error("--num-train and --num-val must be >= 0")
    total = args.num_train + args.num_val
    existing = (
        sum(1 for split in ("train", "val") for _ in (args.out / split).glob("*.mp4")) if args.out.is_dir() else 0
    )
    log.info(
        f"{total} videos of {args.num_frames} x {args.size} x {args.size} into {args.out} ({existing} already there)"
    )
    if args.dry_run:
        log.info("dry run: nothing written")
        return 0
    from mvit.data import synthetic

    start = time.perf_counter()
    try:
        paths = synthetic.generate(args.out, args.num_train, args.num_val, args.num_frames, args.size, args.seed)
    except ValueError as error:
        raise ScriptError(str(error)) from None
    seconds = time.perf_counter() - start
    log.info(
        f"wrote {paths['train']}, {paths['val']}, {paths['classes']} in {seconds:.1f} s "
        f"({(total - existing) / max(seconds, 1e-9):.0f} new clips/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
