"""Command line: ``python -m pipeline.synthetic --out DIR [--seed 0] [--preset demo]``.

Renders a generated sample (with a progress bar over frames) and prints a summary.
"""

from __future__ import annotations

import argparse
import time

from .presets import PRESETS
from .sample import make_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.synthetic", description=__doc__)
    parser.add_argument("--out", required=True, help="output folder (videos/ and manifest.json go here)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="which set of videos (default demo)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    manifest = make_sample(args.out, seed=args.seed, preset=args.preset, progress=True)
    elapsed = time.perf_counter() - started
    for video in manifest.videos:
        kinds = ", ".join(
            f"{s.kind}:{s.motion or '-'}[{s.start_frame}:{s.end_frame}]"
            + (f" -> {s.expected_reject['stage']}/{s.expected_reject['reason']}" if s.expected_reject else "")
            for s in video.shots
        )
        print(f"{video.file} {video.width}x{video.height} {video.num_frames} frames, cuts {video.cuts}: {kinds}")
    print(
        f"preset {manifest.preset!r} seed {manifest.seed}: {len(manifest.videos)} videos, "
        f"{manifest.total_frames} frames in {args.out} ({elapsed:.1f} s)"
    )


if __name__ == "__main__":
    main()
