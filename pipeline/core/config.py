"""Pipeline settings: one place, read from the environment, usable with or without Dagster.

DESIGN.md "Configuration": ``MTVCRAFT_DATA_ROOT`` (tables, checkpoints, outputs;
default ``./data``), ``MTVCRAFT_RAW_VIDEOS`` (a folder or a manifest of videos;
default: the generated sample under the data root), ``MTVCRAFT_WEIGHTS`` (a
folder of real model weights; absent means embedded defaults) and
``RAY_ADDRESS`` (absent: a local Ray on this machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

SHOT_DETECTORS = ("scenedetect", "transnetv2")
POSE_BACKENDS = ("auto", "annotations", "nlf", "mediapipe")
TOKENIZER_MODELS = ("tiny", "full", "release")
MVDIT_MODELS = ("tiny", "cogvideox_5b", "wan_i2v_14b")
MVDIT_STRATEGIES = ("", "ddp", "fsdp")  # "": the model's default (fsdp at full size, ddp for tiny)
BODY_COVERAGE_RULES = ("full", "upper", "any")  # sub-clip rule beyond App. B (pipeline/curation/pose/body_coverage.py)
FLOW_REGIONS = ("subject", "frame")  # what the flow filter measures (pipeline/curation/scores/flow.py); "frame" is the paper's

ENV_DATA_ROOT = "MTVCRAFT_DATA_ROOT"
ENV_RAW_VIDEOS = "MTVCRAFT_RAW_VIDEOS"
ENV_WEIGHTS = "MTVCRAFT_WEIGHTS"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
ENV_MOTION_VIDEO_VERSION = "MTVCRAFT_MOTION_VIDEO_VERSION"
ENV_TIKTOK = "MTVCRAFT_TIKTOK"
ENV_UBC_FASHION = "MTVCRAFT_UBC_FASHION"
ENV_MOCAP = "MTVCRAFT_MOCAP"
ENV_VIDEO_LATENTS = "MTVCRAFT_VIDEO_LATENTS"
TOKENIZER_SOURCES = ("auto", "curated", "mocap", "curated+mocap")

NLF_WEIGHTS_FILE = "nlf_l_multi.torchscript"


def weights_folder(weights_dir: str | os.PathLike | None) -> Path | None:
    """The folder of real model weights: ``weights_dir``, or ``$MTVCRAFT_WEIGHTS`` when None; None when neither
    is set (the metric networks, the curation scorers and NLF all look it up here)."""
    if weights_dir is None:
        weights_dir = os.environ.get(ENV_WEIGHTS, "")
    return Path(weights_dir).expanduser() if str(weights_dir) else None


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the setting."""


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no environment variable (1/true/yes/on, 0/false/no/off); a clear error naming it otherwise."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} = {raw!r}; expected 1/true/yes/on or 0/false/no/off")


def env_int(name: str, default: int = 0) -> int:
    """An integer environment variable; a clear error naming it when it is not one."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} = {raw!r}; expected an integer") from None


@dataclass(frozen=True)
class PipelineSettings:
    """Settings shared by every stage.

    ``raw_videos`` empty means "the generated sample" (rendered on first use
    under ``<data_root>/sample``); ``weights`` empty means "embedded defaults".
    """

    data_root: str = "./data"
    raw_videos: str = ""
    weights: str = ""
    ray_address: str = ""
    shot_detector: str = "scenedetect"
    pose_backend: str = "auto"
    # Embedded MediaPipe backend: run MediaPipe on every k-th frame only, landmarks interpolated in between
    # (1 = every frame; 2 halves MediaPipe's time at +1.1 mm PA-MPJPE on the real videos, BENCHMARKS.md).
    # Part of the stored pose backend's name, so changing it recomputes MediaPipe poses.
    pose_frame_step: int = 1
    min_clip_frames: int = 33
    sample_seed: int = 0
    sample_preset: str = "demo"
    # App. B quality scorers: backend per metric (embedded defaults first; see pipeline/curation/scores).
    blur_backend: str = "opencv-laplacian"
    flow_backend: str = "dis"
    ocr_backend: str = "rapidocr"
    aesthetic_backend: str = "classical-iq"
    # Keep-rules; None = the chosen backend's default (the paper's values for the paper's backends).
    min_aesthetic: float | None = None
    min_flow: float | None = None
    min_blur: float | None = None
    max_text_ratio: float | None = None
    uncertainty_drop: float = 0.10
    # Person rules beyond App. B: keep frames showing the whole body ("upper": half bodies too; "any": the
    # paper's rule); the flow filter reads the subject's region ("frame": the paper's whole-frame flow).
    body_coverage: str = "full"
    flow_region: str = "subject"
    # Bounded scoring cost per clip: every k-th frame, at most N frames; flow on frames resized to this long side.
    score_every_k: int = 4
    score_max_frames: int = 16
    flow_long_side: int = 512
    # Which motion_video version training reads (0 = latest); MTVCRAFT_MOTION_VIDEO_VERSION.
    motion_video_version: int = 0
    # 4DMoT training (App. A.2). Laptop defaults: the tiny config for a few hundred steps; the paper's run is
    # tokenizer_model="full", tokenizer_steps=300000 (200K at 1e-4 then 100K at 1e-5), batch 32 per GPU, 8 workers.
    tokenizer_model: str = "tiny"
    tokenizer_steps: int = 400
    tokenizer_lr: float = 1e-3  # first-stage rate; the second stage uses a tenth (paper: 1e-4 then 1e-5 over 300K steps)
    tokenizer_batch_size: int = 8
    train_workers: int = 1
    train_backend: str = "ray"
    # MV-DiT training (App. A.2). Laptop default: the tiny config, 400 steps (see pipeline/mvdit/stage.py). A
    # cluster run: mvdit_model "cogvideox_5b" (6B) or "wan_i2v_14b" (18B) fine-tuned from the stock backbone and
    # its VAE (local diffusers folders; Wan's text/image encoders from mvdit_encoders, "" = the backbone folder).
    mvdit_model: str = "tiny"
    mvdit_steps: int = 400
    mvdit_backbone: str = ""
    mvdit_vae: str = ""
    mvdit_encoders: str = ""
    mvdit_unconditional_from: str = ""  # 18B only: the 6B checkpoint whose c_m∅ it reuses, frozen (Sec. 3.3)
    mvdit_strategy: str = ""  # "" (fsdp at full size: FSDP2 = the paper's ZeRO-2) | ddp | fsdp
    # MTVCRAFT_VIDEO_LATENTS: the video_latents asset encodes each curated clip's fixed windows once with the
    # VAE and mv_dit reads those latents (pipeline/mvdit/latent_table.py); off: the VAE runs on every step.
    video_latents: bool = False
    # Local copies of the evaluation benchmarks (pipeline/evaluation/benchmarks; "" = <data_root>/benchmarks/<name>).
    tiktok_root: str = ""
    ubc_fashion_root: str = ""
    # Motion capture for 4DMoT (beyond the paper; pipeline/motion/mocap.py, pipeline/motion/sources.py):
    # mocap = MTVCRAFT_MOCAP, a folder or manifest of motion files ("" = none); tokenizer_sources "auto" = curated,
    # plus mocap when it is set; tokenizer_mocap_weight = share of windows from mocap when mixing; real_motions =
    # an npz of real NLF joints (mm) the tokenizer is also evaluated on ("" = ../shared/real when present).
    mocap: str = ""
    tokenizer_sources: str = "auto"
    tokenizer_mocap_weight: float = 0.5
    real_motions: str = ""

    @classmethod
    def from_env(cls, **overrides) -> "PipelineSettings":
        """Settings from the environment variables of DESIGN.md, then ``overrides``."""
        env = {
            "data_root": os.environ.get(ENV_DATA_ROOT, "") or cls.data_root,
            "raw_videos": os.environ.get(ENV_RAW_VIDEOS, ""),
            "weights": os.environ.get(ENV_WEIGHTS, ""),
            "ray_address": os.environ.get(ENV_RAY_ADDRESS, ""),
            "motion_video_version": env_int(ENV_MOTION_VIDEO_VERSION),
            "tiktok_root": os.environ.get(ENV_TIKTOK, ""),
            "ubc_fashion_root": os.environ.get(ENV_UBC_FASHION, ""),
            "mocap": os.environ.get(ENV_MOCAP, ""),
            "video_latents": env_bool(ENV_VIDEO_LATENTS),
        }
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env).validated()

    def validated(self) -> "PipelineSettings":
        """Check every setting; raise ConfigError naming the first bad one."""
        if not self.data_root:
            raise ConfigError(f"data_root ({ENV_DATA_ROOT}) must not be empty")
        if self.raw_videos and not Path(self.raw_videos).exists():
            raise ConfigError(
                f"raw_videos ({ENV_RAW_VIDEOS}) = {self.raw_videos!r} does not exist: "
                "expected a folder of videos or a manifest file (one path per line)"
            )
        if self.weights and not Path(self.weights).is_dir():
            raise ConfigError(f"weights ({ENV_WEIGHTS}) = {self.weights!r} is not a folder")
        if self.shot_detector not in SHOT_DETECTORS:
            raise ConfigError(f"shot_detector = {self.shot_detector!r}; choose one of {SHOT_DETECTORS}")
        if self.pose_backend not in POSE_BACKENDS:
            raise ConfigError(f"pose_backend = {self.pose_backend!r}; choose one of {POSE_BACKENDS}")
        if not isinstance(self.pose_frame_step, int) or isinstance(self.pose_frame_step, bool) or self.pose_frame_step < 1:
            raise ConfigError(f"pose_frame_step = {self.pose_frame_step!r}; must be an integer >= 1 (1 = MediaPipe on every frame)")
        for name in ("min_aesthetic", "min_flow", "min_blur", "max_text_ratio"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} = {value}; thresholds must be >= 0")
        if self.body_coverage not in BODY_COVERAGE_RULES:
            raise ConfigError(f"body_coverage = {self.body_coverage!r}; choose one of {BODY_COVERAGE_RULES}")
        if self.flow_region not in FLOW_REGIONS:
            raise ConfigError(f"flow_region = {self.flow_region!r}; choose one of {FLOW_REGIONS}")
        if not 0.0 <= self.uncertainty_drop < 1.0:
            raise ConfigError(f"uncertainty_drop = {self.uncertainty_drop}; must be in [0, 1) (the paper drops 0.10)")
        if self.score_every_k < 1 or self.score_max_frames < 1 or self.flow_long_side < 32:
            raise ConfigError("score_every_k and score_max_frames must be >= 1 and flow_long_side >= 32")
        if self.motion_video_version < 0:
            raise ConfigError(f"motion_video_version ({ENV_MOTION_VIDEO_VERSION}) = {self.motion_video_version}; must be >= 0")
        if self.tokenizer_model not in TOKENIZER_MODELS:
            raise ConfigError(f"tokenizer_model = {self.tokenizer_model!r}; choose one of {TOKENIZER_MODELS}")
        if self.tokenizer_lr <= 0:
            raise ConfigError(f"tokenizer_lr = {self.tokenizer_lr}; must be > 0")
        if self.tokenizer_steps < 1 or self.tokenizer_batch_size < 1 or self.train_workers < 1:
            raise ConfigError("tokenizer_steps, tokenizer_batch_size and train_workers must be >= 1")
        if self.mvdit_steps < 1:
            raise ConfigError(f"mvdit_steps = {self.mvdit_steps}; must be >= 1")
        if self.mvdit_model not in MVDIT_MODELS:
            raise ConfigError(f"mvdit_model = {self.mvdit_model!r}; choose one of {MVDIT_MODELS}")
        if self.mvdit_strategy not in MVDIT_STRATEGIES:
            raise ConfigError(f"mvdit_strategy = {self.mvdit_strategy!r}; choose one of {MVDIT_STRATEGIES}")
        if self.train_backend not in ("ray", "local"):
            raise ConfigError(f"train_backend = {self.train_backend!r}; choose 'ray' or 'local'")
        if self.mocap and not Path(self.mocap).exists():
            raise ConfigError(f"mocap ({ENV_MOCAP}) = {self.mocap!r} does not exist: expected a folder or a manifest file")
        if self.tokenizer_sources not in TOKENIZER_SOURCES:
            raise ConfigError(f"tokenizer_sources = {self.tokenizer_sources!r}; choose one of {TOKENIZER_SOURCES}")
        if not 0.0 < self.tokenizer_mocap_weight < 1.0:
            raise ConfigError(f"tokenizer_mocap_weight = {self.tokenizer_mocap_weight}; must lie in (0, 1)")
        if not isinstance(self.video_latents, bool):
            raise ConfigError(f"video_latents ({ENV_VIDEO_LATENTS}) = {self.video_latents!r}; must be true or false")
        if self.min_clip_frames < 2:
            raise ConfigError(f"min_clip_frames = {self.min_clip_frames}; must be >= 2 (the paper uses 33)")
        return self

    def with_overrides(self, **changes) -> "PipelineSettings":
        return replace(self, **changes).validated()

    # Where things live under the data root.
    @property
    def root(self) -> Path:
        return Path(self.data_root).expanduser().resolve()

    def table_uri(self, name: str) -> str:
        """A table's URI: under a local data root, or under an object-store root (``s3://...``) as is."""
        if "://" in self.data_root:
            return f"{self.data_root.rstrip('/')}/tables/{name}.lance"
        return str(self.root / "tables" / f"{name}.lance")

    @property
    def sample_dir(self) -> Path:
        return self.root / "sample"

    @property
    def previews_dir(self) -> Path:
        return self.root / "previews"

    def weight_file(self, file_name: str, setting: str) -> Path:
        """Path of a production weight file; a clear error when it is not there."""
        if not self.weights:
            raise ConfigError(f"{setting} needs {ENV_WEIGHTS} set to a folder holding {file_name}")
        path = Path(self.weights) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{setting}: expected {file_name} in {ENV_WEIGHTS} = {self.weights}, not found: {path}")
        return path

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
