"""The ``clip_scores`` stage's per-clip work on Ray actors: all four App. B quality scores of one sub-clip.

Apart from ``pipeline.curation.scoring`` (tables, curation, torch) so that a scoring actor, which imports this
module when it unpickles its task, loads only the scorers (about 2 s less start-up per actor on the
2-core machine).
"""

from __future__ import annotations

import json

from pipeline.core.config import PipelineSettings


def scorer_backends(settings: PipelineSettings) -> dict[str, str]:
    return {"aesthetic": settings.aesthetic_backend, "flow": settings.flow_backend,
            "blur": settings.blur_backend, "ocr": settings.ocr_backend}


class ScoreTask:
    """All four quality scores of every sub-clip of one video, in one pass over the video
    (``scores.score_clips.score_video_clips``: each frame decoded at most once, seeking over gaps)."""

    def __init__(self, settings: PipelineSettings):
        self.backends = scorer_backends(settings)
        self.weights = settings.weights or None
        self.every_k, self.max_frames = settings.score_every_k, settings.score_max_frames
        self.flow_long_side = settings.flow_long_side

    def setup(self) -> None:
        from pipeline.curation.scores.base import FrameSampling, make_scorer

        self.scorers = [make_scorer(m, b, weights_dir=self.weights) for m, b in self.backends.items()]
        self.sampling = FrameSampling(every_k=self.every_k, max_frames=self.max_frames)
        for scorer in self.scorers:
            scorer.setup()

    def key(self) -> str:
        """What the cached scores depend on."""
        from pipeline.curation.scores.base import make_scorer

        parts = {m: f"{b}:{make_scorer(m, b, weights_dir=self.weights).version}" for m, b in self.backends.items()}
        parts["sampling"] = f"every{self.every_k}max{self.max_frames}long{self.flow_long_side}"
        parts["flow_regions"] = "subject box +15%, camera = median outside"  # subject_flow / camera_flow
        return json.dumps(parts, sort_keys=True)

    def __call__(self, item: dict) -> dict:
        """``item``: a video's ``uri`` and its ``clips`` (dicts with start_frame, end_frame, optional boxes).
        Returns {"clips": [scores, or {"error": message}, per clip in order], "seconds": {part: s}}."""
        from pipeline.curation.scores.base import sample_indices
        from pipeline.curation.scores.score_clips import ClipToScore, score_video_clips

        seconds: dict[str, float] = {}
        clips = [ClipToScore(c["start_frame"], c["end_frame"], c.get("boxes")) for c in item["clips"]]
        results = score_video_clips(item["uri"], clips, self.scorers, self.sampling, self.flow_long_side,
                                    timings=seconds)
        out = []
        for clip, scores in zip(clips, results):
            if isinstance(scores, Exception):
                out.append({"error": f"{type(scores).__name__}: {scores}"})
            else:
                out.append({**scores, "frames_scored": len(sample_indices(clip.end - clip.start, self.sampling))})
        return {"clips": out, "seconds": seconds}
