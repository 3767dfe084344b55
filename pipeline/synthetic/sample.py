"""The generated sample: videos with ground-truth SMPL sidecars and the fate each shot should meet.

``make_sample(out_dir, seed, preset)`` renders a preset (a small data structure of
videos and shots) into ``out_dir/videos/<name>.mp4`` (H.264, yuv420p) with a
sidecar ``<name>.smpl.npz`` per video and ``out_dir/manifest.json``. The sample is
the demo's input and the tests' ground truth (DESIGN.md, "Generated sample data"):
each shot records which curation stage should drop it and why, so the pipeline's
shot detection, sub-clip splitting and clip scores can be checked against it.

Sidecar contract (read by other stages; keep exactly):
  ``pose`` float32 (T, P, 24, 3) axis-angle, OpenCV camera frame, NaN where person p is absent;
  ``transl`` float32 (T, P, 3) metres, NaN where absent;
  ``joint_uncertainty`` float32 (T, P, 24) metres, NaN where absent;
  ``betas`` float32 (P, 10) zeros; ``intrinsics`` float32 (3, 3); ``fps`` float; ``width``, ``height`` int.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm.auto import tqdm

from models.motion.skeleton import NUM_JOINTS

from .motions import Motion, make_motion
from .presets import KIND_REJECT, PRESETS, Preset, ShotSpec, VideoSpec
from .render import camera_intrinsics, fit_in_view, random_person_style, random_sway, render_frames
from .scenery import Background, Effects, random_background, text_boxes, text_layout

GENERATOR_VERSION = 2  # bump when rendering changes, so cached samples are re-rendered
MIN_SUBCLIP_FRAMES = 33  # DESIGN.md: a sub-clip needs a single valid person on >= 33 frames
CRF = 18

# --- Manifest ------------------------------------------------------------------------------------


@dataclass
class ShotInfo:
    """A shot as written to the manifest; frames are absolute within the video, ``end_frame`` exclusive."""

    start_frame: int
    end_frame: int
    kind: str
    motion: str | None
    num_people: int
    camera_drift_px: float  # mean picture speed of the camera sway at the image centre, pixels a frame
    expected_reject: dict | None
    expected_subclips: list[list[int]]
    absent_frames: list[int] | None = None  # [start, end) with no person inside a "gap" shot
    text_boxes: list[list[int]] = field(default_factory=list)


@dataclass
class VideoInfo:
    name: str
    file: str
    sidecar: str
    width: int
    height: int
    fps: float
    num_frames: int
    num_bytes: int
    max_people: int
    cuts: list[int]
    shots: list[ShotInfo]


@dataclass
class SampleManifest:
    """What ``make_sample`` wrote: the videos, their shots, cuts and expected fates. ``root`` is the sample folder."""

    root: Path
    seed: int
    preset: str
    hash: str
    fps: float
    videos: list[VideoInfo]
    generator_version: int = GENERATOR_VERSION

    @property
    def total_frames(self) -> int:
        return sum(v.num_frames for v in self.videos)

    def video_path(self, video: VideoInfo | str) -> Path:
        return self.root / self._video(video).file

    def sidecar_path(self, video: VideoInfo | str) -> Path:
        return self.root / self._video(video).sidecar

    def _video(self, video: VideoInfo | str) -> VideoInfo:
        if isinstance(video, VideoInfo):
            return video
        for v in self.videos:
            if v.name == video:
                return v
        raise KeyError(f"no video named {video!r} in the sample at {self.root}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("root")
        d["total_frames"] = self.total_frames
        return d

    @classmethod
    def from_dict(cls, data: dict, root: Path) -> SampleManifest:
        videos = [
            VideoInfo(**{**v, "shots": [ShotInfo(**s) for s in v["shots"]]}) for v in data["videos"]
        ]
        keys = ("seed", "preset", "hash", "fps", "generator_version")
        return cls(root=Path(root), videos=videos, **{k: data[k] for k in keys})

    @classmethod
    def load(cls, out_dir: str | Path) -> SampleManifest:
        path = Path(out_dir) / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"no sample manifest at {path}; run `python -m pipeline.synthetic --out {out_dir}`")
        return cls.from_dict(json.loads(path.read_text()), Path(out_dir))


def read_sidecar(path: str | Path) -> dict[str, np.ndarray | float | int]:
    """The arrays of a ``.smpl.npz`` sidecar (see the module docstring for the contract)."""
    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    out["fps"], out["width"], out["height"] = float(out["fps"]), int(out["width"]), int(out["height"])
    return out


def expected_fate(spec: ShotSpec, start: int) -> tuple[dict | None, list[list[int]]]:
    """(expected_reject, expected sub-clips [start, end) in video frames) of a shot starting at ``start``.

    The first stage that drops a shot names it: sub-clip rules (person count,
    length) come before the clip scores.
    """
    reject = KIND_REJECT[spec.kind]
    if reject is not None and reject[0] == "subclips":
        return {"stage": reject[0], "reason": reject[1]}, []
    absent = spec.absent()
    parts = [(0, spec.frames)] if absent is None else [(0, absent[0]), (absent[1], spec.frames)]
    subclips = [[start + a, start + b] for a, b in parts if b - a >= MIN_SUBCLIP_FRAMES]
    if not subclips:
        return {"stage": "subclips", "reason": "too_short"}, []
    if reject is not None:
        return {"stage": reject[0], "reason": reject[1]}, subclips
    return None, subclips


# --- Rendering a shot ----------------------------------------------------------------------------


@dataclass
class ShotRender:
    """A rendered shot: frames (T, H, W, 3) RGB and per-person ground truth (P = people in this shot)."""

    frames: np.ndarray
    pose: np.ndarray  # (T, P, 24, 3)
    transl: np.ndarray  # (T, P, 3)
    joint_uncertainty: np.ndarray  # (T, P, 24)
    drift_px: float  # mean picture speed of the camera sway, pixels a frame (0 = still camera)
    text_boxes: list[tuple[int, int, int, int]]


# Typical per-joint uncertainty (metres): the torso is well constrained, extremities less so.
_BASE_UNCERTAINTY = np.array(
    [0.010, 0.012, 0.012, 0.010, 0.016, 0.016, 0.010, 0.022, 0.022, 0.010, 0.025, 0.025,
     0.012, 0.012, 0.012, 0.014, 0.014, 0.014, 0.018, 0.018, 0.024, 0.024, 0.027, 0.027]
)


def simulated_uncertainty(rng: np.random.Generator, num_frames: int, noisy: bool) -> np.ndarray:
    """Per-joint uncertainty (T, 24) metres: 0.01-0.03 normally, 0.15-0.35 on a noisy-pose shot."""
    if noisy:
        return rng.uniform(0.15, 0.35, size=(num_frames, NUM_JOINTS))
    jitter = np.abs(rng.normal(0.0, 0.002, size=(num_frames, NUM_JOINTS)))
    return np.clip(_BASE_UNCERTAINTY * rng.uniform(0.9, 1.1) + jitter, 0.008, 0.03)


def render_shot(
    spec: ShotSpec,
    width: int,
    height: int,
    fps: float,
    rng: np.random.Generator,
    *,
    hue: float = 0.0,
    tempo: float = 1.0,
    amplitude: float = 1.0,
    draw_persons: bool = True,
    progress=None,
) -> ShotRender:
    """Render one shot; the same ``rng`` state gives the same shot.

    ``draw_persons=False`` gives the same frames without the people (a person-free reference).
    """
    intrinsics = camera_intrinsics(width, height)
    num = spec.frames
    motion_names = [spec.motion, spec.motion2 or spec.motion][: spec.num_people]
    pelvis_xs = [None] if spec.num_people == 1 else [-0.6, 0.6]
    focal = float(intrinsics[0, 0])
    sway = None if spec.kind == "static" else random_sway(rng, width, height)
    rotations = None if sway is None else sway.rotations(num, focal)
    motions: list[Motion] = []
    for name, x in zip(motion_names, pelvis_xs):
        motion = make_motion(name, num, fps, rng, tempo=tempo, amplitude=amplitude, pelvis_x=x)
        motions.append(fit_in_view(motion, intrinsics, width, height, rotations=rotations))
    styles = [random_person_style(rng) for _ in motions]
    drift = 0.0 if sway is None else sway.mean_speed_px(num, focal)
    background: Background = random_background(rng, width, height, hue, intrinsics, rotations)
    effects = Effects()
    boxes: list[tuple[int, int, int, int]] = []
    if spec.kind == "blur":
        effects = Effects(blur_sigma=float(rng.uniform(4.0, 5.0)))
    elif spec.kind == "text":
        layout = text_layout(rng, width, height)
        effects, boxes = Effects(text=tuple(layout)), text_boxes(layout)
    uncertainty = [simulated_uncertainty(rng, num, spec.kind == "noisy_pose") for _ in motions]

    people_count = len(motions)
    pose = np.full((num, people_count, NUM_JOINTS, 3), np.nan, dtype=np.float32)
    transl = np.full((num, people_count, 3), np.nan, dtype=np.float32)
    unc = np.full((num, people_count, NUM_JOINTS), np.nan, dtype=np.float32)
    present = np.ones(num, dtype=bool)
    if (absent := spec.absent()) is not None:
        present[absent[0] : absent[1]] = False
    for p, motion in enumerate(motions):
        pose[present, p] = motion.pose[present]
        transl[present, p] = motion.transl[present]
        unc[present, p] = uncertainty[p][present]
    tracks = [m.joints() for m in motions]
    for track in tracks:
        track[~present] = np.nan
    frames = render_frames(
        background, tracks, styles, intrinsics, width, height, num, effects,
        draw_persons=draw_persons, progress=progress,
    )
    return ShotRender(frames, pose, transl, unc, drift, boxes)


# --- Writing the sample --------------------------------------------------------------------------


def sample_hash(seed: int, preset: Preset) -> str:
    """Content hash of what a sample would hold: generator version, seed and the full preset."""
    payload = json.dumps({"version": GENERATOR_VERSION, "seed": seed, "preset": asdict(preset)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def shot_rng(seed: int, preset: Preset, video_index: int, shot_index: int | None = None) -> np.random.Generator:
    """The random stream of one video (``shot_index`` None) or shot; the preset's name salts it."""
    indices = [video_index] if shot_index is None else [video_index, shot_index + 1]
    return np.random.default_rng([seed, zlib.crc32(preset.name.encode()), *indices])


class _H264Writer:
    """Streams RGB frames into an H.264 (libx264, yuv420p, CRF 18) mp4 with PyAV.

    CRF 18 keeps hard cuts and the blur/sharpness contrast intact; ``veryfast`` is
    plenty at these sizes and about 3x quicker than ``medium``.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        # x264's macroblock-tree rate control gave different bytes run to run here (even on
        # one thread), and the output depends on the thread count: with mbtree off and one
        # thread the file, and so a video id derived from its bytes, is a function of the seed.
        self.stream.options = {"crf": str(CRF), "preset": "veryfast", "x264-params": "mbtree=0"}
        self.stream.codec_context.thread_count = 1

    def write(self, frames: np.ndarray) -> None:
        for frame in frames:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _write_video(
    root: Path, seed: int, preset: Preset, index: int, video: VideoSpec, bar
) -> VideoInfo:
    file, sidecar = f"videos/{video.name}.mp4", f"videos/{video.name}.smpl.npz"
    max_people = max(1, max(s.num_people for s in video.shots))
    video_rng = shot_rng(seed, preset, index)
    base_hue = video_rng.uniform()
    poses, transls, uncs, shots = [], [], [], []
    tmp = root / f"videos/{video.name}.partial.mp4"
    writer = _H264Writer(tmp, video.width, video.height, preset.fps)
    start = 0
    try:
        for si, spec in enumerate(video.shots):
            hue = (base_hue + 0.37 * si) % 1.0  # consecutive shots get far-apart palettes
            shot = render_shot(
                spec, video.width, video.height, preset.fps, shot_rng(seed, preset, index, si),
                hue=hue, tempo=preset.tempo, amplitude=preset.amplitude, progress=bar,
            )
            writer.write(shot.frames)
            pad = max_people - shot.pose.shape[1]
            poses.append(np.pad(shot.pose, ((0, 0), (0, pad), (0, 0), (0, 0)), constant_values=np.nan))
            transls.append(np.pad(shot.transl, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan))
            uncs.append(np.pad(shot.joint_uncertainty, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan))
            reject, subclips = expected_fate(spec, start)
            shots.append(
                ShotInfo(
                    start_frame=start, end_frame=start + spec.frames, kind=spec.kind, motion=spec.motion_label,
                    num_people=spec.num_people, camera_drift_px=round(shot.drift_px, 3), expected_reject=reject,
                    expected_subclips=subclips, text_boxes=[list(b) for b in shot.text_boxes],
                    absent_frames=None if spec.absent() is None else [start + a for a in spec.absent()],
                )
            )
            start += spec.frames
    finally:
        writer.close()
    os.replace(tmp, root / file)
    np.savez(
        root / sidecar,
        pose=np.concatenate(poses).astype(np.float32),
        transl=np.concatenate(transls).astype(np.float32),
        joint_uncertainty=np.concatenate(uncs).astype(np.float32),
        betas=np.zeros((max_people, 10), dtype=np.float32),
        intrinsics=camera_intrinsics(video.width, video.height),
        fps=np.float64(preset.fps),
        width=np.int64(video.width),
        height=np.int64(video.height),
    )
    return VideoInfo(
        name=video.name, file=file, sidecar=sidecar, width=video.width, height=video.height, fps=preset.fps,
        num_frames=start, num_bytes=(root / file).stat().st_size, max_people=max_people,
        cuts=[s.start_frame for s in shots[1:]], shots=shots,
    )


def _cached(root: Path, digest: str) -> SampleManifest | None:
    try:
        manifest = SampleManifest.load(root)
    except (FileNotFoundError, KeyError, TypeError, json.JSONDecodeError):
        return None
    files_ok = all(manifest.video_path(v).is_file() and manifest.sidecar_path(v).is_file() for v in manifest.videos)
    return manifest if manifest.hash == digest and files_ok else None


def make_sample(out_dir: str | Path, seed: int = 0, preset: str = "demo", progress: bool = False) -> SampleManifest:
    """Render preset ``preset`` with ``seed`` into ``out_dir``.

    Returns the existing manifest at once when the same seed and preset (same hash)
    was already written there with all its files.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown sample preset {preset!r}; expected one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    root = Path(out_dir)
    digest = sample_hash(seed, spec)
    if (cached := _cached(root, digest)) is not None:
        return cached
    (root / "videos").mkdir(parents=True, exist_ok=True)
    with tqdm(total=spec.total_frames, disable=not progress, unit="frame", desc=f"rendering {preset}") as bar:
        videos = [_write_video(root, seed, spec, i, v, bar) for i, v in enumerate(spec.videos)]
    manifest = SampleManifest(root=root, seed=seed, preset=preset, hash=digest, fps=spec.fps, videos=videos)
    tmp = root / "manifest.json.partial"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2))
    os.replace(tmp, root / "manifest.json")  # written last: a half-written sample never looks complete
    return manifest
