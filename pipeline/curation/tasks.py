"""The per-item work of the curation stages (App. B), run on Ray actors (``ray_runtime.map_items``).

Kept apart from ``pipeline.curation.stages`` (tables, previews, torch) on purpose: an actor imports the
module of its task class when it unpickles the task, and this module imports only the standard
library and the settings, so probe and shot actors start without loading torch and Lance (about
2 s of CPU per actor on the 2-core machine, each stage starting its own pool). Each task imports
what it needs in ``setup`` / ``__call__``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import NLF_WEIGHTS_FILE


class ProbeTask:
    """Content id and PyAV probe of one file."""

    def setup(self) -> None:
        pass

    def __call__(self, item: dict) -> dict:
        from pipeline.core.video_io import VideoRejected, content_id, probe_video

        path = Path(item["uri"])
        if not path.is_file():
            return {"rejected": "missing", "detail": f"file not found: {path}"}
        video_id = content_id(path)
        try:
            info = probe_video(path)
        except VideoRejected as err:
            return {"id": video_id, "rejected": err.reason, "detail": err.detail}
        return {
            "id": video_id, "uri": str(path), "size_bytes": path.stat().st_size, "num_frames": info.num_frames,
            "fps": info.fps, "width": info.width, "height": info.height, "duration_s": info.duration_s, "codec": info.codec,
        }


class ShotTask:
    """Shot boundaries of one video with the configured detector (loaded once per actor)."""

    def __init__(self, detector: str):
        self.detector_name = detector

    def setup(self) -> None:
        from pipeline.curation.shots import make_shot_detector

        self.detector = make_shot_detector(self.detector_name)

    def __call__(self, item: dict) -> dict:
        seconds: dict[str, float] = {}
        shots = self.detector.detect(item["uri"], timings=seconds)
        return {"backend": f"{self.detector.name}:{self.detector.version}",
                "shots": [(s.start_frame, s.end_frame) for s in shots], "seconds": seconds}


class PoseBackendUnavailable(RuntimeError):
    """No configured pose backend can handle this video."""


class PoseTask:
    """Per-frame SMPL of one whole video (App. B: pose estimation), with the backend the settings pick.

    ``auto`` picks per video: the sidecar annotations when present, else NLF when its weights are
    configured (the paper's estimator), else the embedded MediaPipe + SMPL IK fit (CPU), which runs
    MediaPipe on every ``frame_step``-th frame (the setting ``pose_frame_step``)."""

    def __init__(self, backend: str, weights: str, frame_step: int = 1):
        self.backend = backend
        self.weights = weights
        self.frame_step = frame_step

    def setup(self) -> None:
        self._estimators: dict = {}

    def _estimator(self, name: str):
        from pipeline.curation.pose import estimator_options, make_pose_estimator

        if name not in self._estimators:
            self._estimators[name] = make_pose_estimator(name, **estimator_options(name, self.weights, self.frame_step))
        return self._estimators[name]

    def backend_for(self, video_uri: str) -> str:
        from pipeline.curation.pose import choose_backend
        from pipeline.curation.pose.annotations import sidecar_path

        backend = choose_backend(self.backend, self.weights, sidecar_path(video_uri).is_file())
        if backend:
            return backend
        raise PoseBackendUnavailable(
            f"no sidecar {sidecar_path(video_uri).name}, no NLF weights "
            f"({NLF_WEIGHTS_FILE} in MTVCRAFT_WEIGHTS={self.weights or '<unset>'}) and mediapipe is not installed"
        )

    def __call__(self, item: dict):
        """The video's PoseTrack; its ``seconds`` say where the time went (decode and pose, or the
        backend's own parts: MediaPipe's landmarks, person count and IK fit)."""
        import time

        start = time.perf_counter()
        estimator = self._estimator(self.backend_for(item["uri"]))
        track = estimator.estimate(item["uri"], 0, item["num_frames"])
        total = time.perf_counter() - start
        seconds = dict(track.seconds or {})
        # What the backend does not itemise: all of its pose work, or the rest beside its parts (mostly
        # building the estimator on the actor's first video: importing MediaPipe, loading its models).
        seconds["pose" if set(seconds) <= {"decode"} else "setup and other"] = total - sum(seconds.values())
        track.seconds = seconds
        return track
