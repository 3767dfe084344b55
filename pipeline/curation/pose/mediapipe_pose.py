"""MediaPipe Pose + an SMPL IK fit: the embedded (offline, CPU) pose backend (paper Sec. 3.1, App. B).

The paper's estimator, NLF, needs a model file and a GPU to be practical. This
backend runs anywhere the project installs: MediaPipe Pose (BlazePose, legacy
``mp.solutions.pose``, ``model_complexity=1``, the only model its wheel ships)
in video (tracking) mode (`pipeline.curation.pose.mediapipe_landmarks`) gives per frame 33 landmarks in the image and 33
"world" landmarks in metres around the hip centre, with a visibility each.
``joint_map.py`` turns them into SMPL-24 joint targets and ``ik_fit.py`` fits
SMPL rotations and a root translation to the whole clip at once.

Camera and axes: MediaPipe's world landmarks use image-aligned axes (+x right,
+y down, +z away from the camera: the OpenCV camera axes), measured to within
about 10 degrees against NLF on real video. They are metric but hip-centred, so
the root translation comes from the image landmarks through the App. B camera
(55 degree FoV on the longer side, centred principal point) and the fitted 3D
joints (``ik_fit.solve_translation``, then the reprojection term of the fit).
MediaPipe lifts the pose from a crop centred on the person, so its world axes
are taken to look along the ray through the hip centre and are turned onto it
before the fit (up to ~15 degrees at the image border; this changes only the
global orientation, not the Procrustes-aligned error).

Temporal smoothing: on top of MediaPipe's own landmark filter, the world
landmarks are low-passed with a Gaussian of ``world_smoothing_frames`` (1 frame)
within each run of consecutive frames before the fit: their depth jitters
frame to frame (measured 0.8 mm lower PA-MPJPE against NLF on the real videos;
wider kernels start to cut real motion).

Uncertainty per joint (metres): the fit residual (3D and 2D, at the joint's
depth) plus ``0.1 m x (1 - visibility)``, floored at 1 cm: a heuristic in the
same units as NLF's, not a calibrated standard deviation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from models.motion.skeleton import NUM_JOINTS
from pipeline.core.camera import DEFAULT_FOV_DEG, camera_intrinsics
from pipeline.curation.pose.base import PoseTrack
from pipeline.curation.pose.ik_fit import IKResult, IKSettings, IKTargets, fit_smpl
from pipeline.curation.pose.joint_map import JOINT_WEIGHTS, mediapipe_to_smpl
from pipeline.curation.pose.mediapipe_landmarks import (
    PERSON_COUNT_STEP,
    REPEAT_LEVEL,
    MediaPipeLandmarks,
    run_mediapipe,
    timed_frames,
)
from pipeline.curation.pose.mediapipe_runtime import import_mediapipe
from pipeline.curation.pose.person_count import MIN_SCORE, PersonCounter

VISIBILITY_UNCERTAINTY_M = 0.10  # metres added to a joint's uncertainty when it is not visible at all
MIN_UNCERTAINTY_M = 0.01


def ray_rotation(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) turning the optical axis onto the viewing ray of pixels (N, 2)."""
    rays = np.concatenate([points, np.ones_like(points[:, :1])], -1) @ np.linalg.inv(intrinsics).T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, rays)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    axis = np.where(sin > 1e-12, axis / np.maximum(sin, 1e-12), np.array([1.0, 0.0, 0.0]))
    angle = np.arctan2(sin, rays[:, 2:])
    # Rodrigues: R = I + sin K + (1 - cos) K^2.
    k = np.zeros((len(points), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    return np.eye(3) + np.sin(angle)[..., None] * k + (1 - np.cos(angle))[..., None] * (k @ k)


def smooth_runs(values: np.ndarray, new_segment: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian low-pass of ``values`` (T, ...) along time, within each run of consecutive
    frames (``new_segment[t]`` starts a run); ``sigma_frames`` 0 returns them unchanged."""
    if sigma_frames < 0:
        raise ValueError(f"world_smoothing_frames must be >= 0, got {sigma_frames}")
    if sigma_frames == 0 or len(values) == 0:
        return values
    from scipy.ndimage import gaussian_filter1d

    out = np.array(values, dtype=np.float64)
    starts = np.flatnonzero(new_segment).tolist() + [len(values)]
    for a, b in zip(starts, starts[1:]):
        out[a:b] = gaussian_filter1d(out[a:b], sigma_frames, axis=0, mode="nearest")
    return out.astype(values.dtype)


def ik_targets(
    landmarks: MediaPipeLandmarks, intrinsics: np.ndarray, frame_index: np.ndarray, world_smoothing_frames: float = 0.0
) -> IKTargets:
    """SMPL joint targets of the frames where MediaPipe found a person (``landmarks.found``),
    world landmarks low-passed over ``world_smoothing_frames`` (``smooth_runs``)."""
    found = landmarks.found
    kept = np.asarray(frame_index)[found]
    new_segment = np.ones(len(kept), bool)
    new_segment[1:] = np.diff(kept) != 1
    smoothed = smooth_runs(landmarks.world[found], new_segment, world_smoothing_frames)
    world, weight3d = mediapipe_to_smpl(smoothed, landmarks.visibility[found])
    image, weight2d = mediapipe_to_smpl(landmarks.image[found], landmarks.visibility[found])
    hip_centre = 0.5 * (image[:, 1] + image[:, 2])
    world = world @ ray_rotation(hip_centre, intrinsics).transpose(0, 2, 1).astype(np.float32)
    return IKTargets(
        joints3d=world,
        # Hidden joints keep some weight in 3D (MediaPipe still guesses them), none in 2D.
        weight3d=(JOINT_WEIGHTS * np.clip(weight3d, 0.2, 1.0)).astype(np.float32),
        keypoints2d=image,
        weight2d=(JOINT_WEIGHTS * np.clip(weight2d, 0.0, 1.0) ** 2).astype(np.float32),
        intrinsics=intrinsics,
        new_segment=new_segment,
    )


def joint_uncertainty(fit: IKResult, visibility: np.ndarray) -> np.ndarray:
    """(T, 24) metres: fit residual + 0.1 m x (1 - visibility), at least 1 cm (a heuristic)."""
    residual = np.sqrt(fit.residual3d**2 + fit.residual2d**2)
    hidden = VISIBILITY_UNCERTAINTY_M * (1.0 - np.clip(visibility, 0.0, 1.0))
    return np.maximum(residual + hidden, MIN_UNCERTAINTY_M).astype(np.float32)


def track_from_landmarks(
    landmarks: MediaPipeLandmarks,
    frame_index: np.ndarray,
    backend: str,
    fov_deg: float = DEFAULT_FOV_DEG,
    settings: IKSettings = IKSettings(),
    world_smoothing_frames: float = 0.0,
) -> tuple[PoseTrack, IKResult]:
    """Fit SMPL to the landmarks of one run of frames -> the track and the fit behind it."""
    frame_index = np.asarray(frame_index, np.int64)
    if len(frame_index) != len(landmarks.world):
        raise ValueError(f"{len(frame_index)} frame indices for {len(landmarks.world)} frames of landmarks")
    found = landmarks.found
    num_frames = len(frame_index)
    pose = np.full((num_frames, NUM_JOINTS, 3), np.nan, np.float32)
    transl = np.full((num_frames, 3), np.nan, np.float32)
    uncertainty = np.full((num_frames, NUM_JOINTS), np.nan, np.float32)
    intrinsics = camera_intrinsics(landmarks.width, landmarks.height, fov_deg) if found.any() else np.eye(3)
    targets = ik_targets(landmarks, intrinsics, frame_index, world_smoothing_frames)
    fit = fit_smpl(targets, settings)
    pose[found], transl[found] = fit.pose, fit.transl
    _, visibility = mediapipe_to_smpl(landmarks.image[found], landmarks.visibility[found])
    uncertainty[found] = joint_uncertainty(fit, visibility)
    track = PoseTrack(frame_index, landmarks.num_people(), pose, transl, uncertainty, backend,
                      body_coverage=landmarks.body_coverage())
    return track.validate(), fit


def backend_frame_step(backend: str) -> int | None:
    """The ``frame_step`` a stored backend name (``MediaPipePoses.backend``) says MediaPipe ran with;
    None for other backends. Lets the pose stage recompute videos when ``pose_frame_step`` changes."""
    if not backend.startswith("mediapipe:"):
        return None
    match = re.search(r"\+step(\d+)", backend)
    return int(match.group(1)) if match else 1


@dataclass
class MediaPipePoses:
    """Embedded pose backend: MediaPipe Pose landmarks, then an SMPL IK fit per run of frames."""

    fov_deg: float = DEFAULT_FOV_DEG
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smooth_landmarks: bool = True
    repeat_level: float = REPEAT_LEVEL  # 0: run MediaPipe on repeated frames too
    frame_step: int = 1  # > 1: MediaPipe on every k-th frame, landmarks interpolated in between
    world_smoothing_frames: float = 1.0  # Gaussian sigma (frames) on the world landmarks before the fit
    count_people: bool = True  # run the person detector (person_count.py); False: 1 where the pose was found
    person_count_step: int = PERSON_COUNT_STEP  # the detector runs on every k-th frame (and the last)
    person_min_score: float = MIN_SCORE  # detections scoring below it are not counted
    person_count_tiles: bool = True  # the detector also runs on the left and right 60% of the frame
    ik_settings: IKSettings = field(default_factory=IKSettings)
    name: str = field(default="mediapipe", init=False)

    def __post_init__(self) -> None:
        mediapipe = import_mediapipe()  # fail here, with the install hint, rather than on the first video

        for option in ("min_detection_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(self, option) <= 1.0:
                raise ValueError(f"{option} must be in [0, 1], got {getattr(self, option)}")
        if self.frame_step < 1 or self.repeat_level < 0 or self.world_smoothing_frames < 0:
            raise ValueError("MediaPipePoses: frame_step must be >= 1, repeat_level and world_smoothing_frames >= 0")
        if self.person_count_step < 1:
            raise ValueError(f"MediaPipePoses: person_count_step must be >= 1, got {self.person_count_step}")
        counter = self._person_counter()  # checks its settings
        step = f"+step{self.frame_step}" if self.frame_step > 1 else ""
        people = ""
        if self.count_people:
            people = f"+people:{counter.backend.split(':', 2)[-1]}_every{self.person_count_step}"
        self.backend = f"mediapipe:{mediapipe.__version__}:pose_landmark_full{step}+smpl_ik{people}"

    def estimate(self, video_path: str, start_frame: int, end_frame: int) -> PoseTrack:
        """Decode frames ``[start_frame, end_frame)`` and track the person through them."""
        from pipeline.core.video_io import iter_frames

        if not 0 <= start_frame <= end_frame:
            raise ValueError(f"bad frame range [{start_frame}, {end_frame})")
        import time

        decode, seconds = [0.0], {}
        landmarks = self.landmarks(timed_frames(iter_frames(video_path, start=start_frame, end=end_frame), decode), seconds)
        if len(landmarks.world) != end_frame - start_frame:
            raise ValueError(
                f"{video_path}: asked for frames [{start_frame}, {end_frame}) but the video "
                f"ended at frame {start_frame + len(landmarks.world)}"
            )
        clock = time.perf_counter()
        track = self.track(landmarks, np.arange(start_frame, end_frame))
        track.seconds = {"decode": decode[0], **seconds, "ik fit": time.perf_counter() - clock}
        return track

    def estimate_frames(self, frames: np.ndarray, first_index: int = 0) -> PoseTrack:
        """Run on consecutive frames (N, H, W, 3) uint8 RGB; rows are numbered from ``first_index``."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
        return self.track(self.landmarks(frames), np.arange(first_index, first_index + len(frames)))

    def landmarks(self, frames: Iterable[np.ndarray], timings: dict[str, float] | None = None) -> MediaPipeLandmarks:
        """MediaPipe alone (no IK): the raw landmarks of consecutive frames, and the people counts
        (``timings``: see ``run_mediapipe``)."""
        counter = self._person_counter() if self.count_people else None
        try:
            return run_mediapipe(
                frames, self.min_detection_confidence, self.min_tracking_confidence, self.smooth_landmarks,
                self.repeat_level, self.frame_step, counter, self.person_count_step, timings,
            )
        finally:
            if counter is not None:
                counter.close()

    def _person_counter(self) -> PersonCounter:
        return PersonCounter(min_score=self.person_min_score, tiles=self.person_count_tiles)

    def track(self, landmarks: MediaPipeLandmarks, frame_index: np.ndarray) -> PoseTrack:
        """The IK fit alone: landmarks -> PoseTrack."""
        return track_from_landmarks(
            landmarks, frame_index, self.backend, self.fov_deg, self.ik_settings, self.world_smoothing_frames
        )[0]
