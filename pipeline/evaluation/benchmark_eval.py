"""The ``benchmark_eval`` stage: animate every test video of a benchmark and score it with the paper's six
metrics (Sec. 4, App. A.3, App. J), beside two baselines, in Table 1 (TikTok) / Table 3 (Fashion) form.

Protocol (App. A.3, ``EvalProtocol``): the reference image is the test video's first frame; the motion is the
test video's own poses (sidecar joints or the pose backend, ``pipeline.motion.driving_motion``); sampling takes
50 steps with motion CFG 3.0 (the 6B model: the pipeline's ``CogVideoXDDIMScheduler``). The text prompt "a person
is dancing" with text CFG 6.0 belongs to the 18B model (a Wan checkpoint loads as
`pipeline.animation.wan_pipeline.WanMotionPipeline`: rectified flow, two-condition CFG); the 6B (CogVideoX) MV-DiT has no
text branch, so for it both are recorded but unused. Resolution and stride are config; their defaults are the
released 7B inference's (512 x 512 centre crop; the paper states neither).

Every test sequence is animated whole (``num_frames=None``): the long-motion windows of
`pipeline.animation.long_motion` (the model's longest pass, overlap 9, as the released 17B sampler) cover every
frame, and the frame metrics are averaged over every frame. Why whole: the test sets are small. DisCo's
TikTok split, which the later papers (MagicAnimate, Champ, UniAnimate, RealisDance-DiT ...) cite, is 10
sequences (DisCo issues #27, #103: TikTok 335-340 plus company-collected ones never released), the UBC
Fashion test split 100 videos (500 train / 100 test as DreamPose and Animate Anyone describe it); RealisDance-DiT's evaluation code is not public (its issue #73 asks how
sequences longer than its 81 frames were sampled, unanswered). Cut to 49 frames, 5 TikTok sequences give
240 frames for Inception's 2048-d covariance, 15 segments for I3D's 400-d one and 5 vectors for FID-VID.
Whole sequences give the most samples the set has; the report prints each distribution metric's sample
count and feature dimension, and a metric fitted to fewer samples than dimensions (a rank-deficient
covariance) is listed apart, never in the row beside the paper's published values. ``num_frames=N`` keeps
the old protocol (the first N frames, one pass).

Methods, each on the same videos in one run:

- ``mtvcraft``: the checkpoint under the protocol;
- ``copy_reference``: the reference frame repeated (a static video): what any method must beat on motion;
- ``null_motion``: the same model and noise with the learnable unconditional motion tokens c_m∅ in place of
  the motion at every step (no motion CFG; the 18B model keeps its text CFG): what the model makes without
  motion.

Per video: PSNR, SSIM, LPIPS (paired, averaged over frames). Over the set: FID, FVD, FID-VID. Frame 0 is the
condition itself, so by default it is left out of every metric (``skip_reference_frame``): a copy of it
would score PSNR = inf. A metric whose weights are absent is "not computed: missing <file> ..." (never a
substitute network). Rows go to the Lance table ``benchmark_eval`` keyed by (benchmark, method, video,
run id); the run id hashes the checkpoint's checksum and the protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.animation.loading import load_train_checkpoint
from pipeline.animation.long_motion import RELEASE_OVERLAP, animate_in_windows, check_window, longest_pass
from pipeline.animation.wan_pipeline import WanMotionPipeline
from pipeline.core import previews, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.evaluation.benchmarks import BENCHMARKS, BenchmarkVideo, load_benchmark, motion_joints

TABLE = "benchmark_eval"
METHODS = ("mtvcraft", "copy_reference", "null_motion")
METHOD_LABELS = {"mtvcraft": "MTVCraft (ours, this checkpoint)", "copy_reference": "copy the reference (baseline)",
                 "null_motion": "null motion tokens c_m∅ (baseline)"}
METRIC_COLUMNS = ("psnr", "ssim", "lpips", "fid", "fvd", "fid_vid")
METRIC_HEADERS = ("PSNR↑", "SSIM↑", "LPIPS↓", "FID↓", "FVD↓", "FID-VID↓")
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2, "fvd": 2, "fid_vid": 2}  # as the paper prints them
ALL_VIDEOS = "*"  # video_id of a method's aggregate row

BENCHMARK_EVAL = pa.schema([
    ("id", pa.string()),            # "<benchmark>|<method>|<video_id>|<run_id>"
    ("benchmark", pa.string()),
    ("method", pa.string()),        # mtvcraft | copy_reference | null_motion
    ("video_id", pa.string()),      # "*" on the aggregate row
    ("run_id", pa.string()),        # hash of the checkpoint checksum + protocol
    ("row_kind", pa.string()),      # video | aggregate
    ("checkpoint", pa.string()),
    ("num_videos", pa.int32()),
    ("frames_evaluated", pa.int32()),  # per video; the aggregate row: all videos together
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("num_inference_steps", pa.int32()),
    ("motion_guidance_scale", pa.float32()),
    ("psnr", pa.float64()),         # null where not applicable (distribution metrics on video rows) or not computed
    ("ssim", pa.float64()),
    ("lpips", pa.float64()),
    ("fid", pa.float64()),
    ("fvd", pa.float64()),
    ("fid_vid", pa.float64()),
    ("not_computed", pa.string()),  # JSON {metric: "not computed: ..."}
    ("protocol", pa.string()),      # JSON of EvalProtocol
    ("evaluated_at", pa.string()),  # ISO-8601 UTC
])

# Published rows, copied verbatim from the paper's text (underlines for second-best dropped). Tab-separated:
# model, PSNR, SSIM, LPIPS, FID, FVD, FID-VID; "-" where the paper has no value.
PAPER_TABLE_1_TIKTOK = """\
MusePose (Hu, 2024)	18.20	0.757	0.248	41.99	532.75	14.60
MoorAA (Hu, 2024)	18.62	0.764	0.230	37.28	501.22	12.40
ControlNeXt (Peng et al., 2024)	16.31	0.728	0.296	33.48	548.01	28.23
Animate-X (Tan et al., 2024)	16.71	0.743	0.285	32.77	508.63	17.47
MimicMotion (Zhang et al., 2024a)	19.30	0.751	0.220	34.88	472.51	9.30
RealisDance-DiT (Zhou et al., 2025)	17.55	0.717	0.261	30.39	458.81	-
Unianimate-DiT (Wang et al., 2025)	19.35	0.765	0.235	28.47	402.14	9.12
MTVCraft-6B	19.35	0.760	0.219	23.58	317.21	8.56
MTVCraft-18B	19.84	0.779	0.217	20.70	276.65	7.31"""
PAPER_TABLE_3_FASHION = """\
MusePose (Hu, 2024)	22.20	0.896	0.067	14.95	96.17	10.94
MooraAA (Hu, 2024)	20.83	0.880	0.093	27.74	149.66	10.13
ControlNeXt (Peng et al., 2024)	18.48	0.853	0.132	13.82	143.02	14.60
Animate-X (Tan et al., 2024)	22.15	0.893	0.069	10.11	70.47	11.87
MimicMotion (Zhang et al., 2024a)	23.80	0.913	0.061	15.40	80.89	8.17
RealisDance-DiT (Zhou et al., 2025)	23.33	0.908	0.053	10.81	72.94	-
Unianimate-DiT (Wang et al., 2025)	23.52	0.907	0.060	12.79	88.36	6.12
MTVCraft-6B	23.42	0.917	0.059	8.91	67.42	4.56
MTVCraft-18B	23.90	0.923	0.057	8.74	64.88	4.41"""
PAPER_TABLES = {"tiktok": ("Table 1 (TikTok)", PAPER_TABLE_1_TIKTOK),
                "ubc_fashion": ("Table 3 (Fashion)", PAPER_TABLE_3_FASHION)}


def paper_rows(benchmark: str) -> list[list[str]]:
    """The paper's published rows for ``benchmark`` as strings ([] for the generated benchmark)."""
    if benchmark not in PAPER_TABLES:
        return []
    return [line.split("\t") for line in PAPER_TABLES[benchmark][1].splitlines()]


# ---- protocol -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalProtocol:
    """App. A.3 evaluation settings; defaults are the published ones (see the module docstring)."""

    num_inference_steps: int = 50         # DDIM steps (App. A.3)
    motion_guidance_scale: float = 3.0    # motion CFG (App. A.3)
    text_prompt: str = "a person is dancing"  # 18B model only (App. A.3)
    text_guidance_scale: float = 6.0      # 18B model only (App. A.3)
    num_frames: int | None = None         # None: every frame of each test video (long-motion windows);
                                          # N (1 + 8k): its first N frames, one pass (the former protocol)
    window: int | None = None             # frames per pass (1 + 8k); None: the longest the model's c_m∅ covers
    overlap: int = RELEASE_OVERLAP        # frames consecutive windows share (held and cross-faded)
    height: int = 512                     # released 7B inference: 512 x 512 centre crop
    width: int = 512
    frame_stride: int = 1                 # take every k-th frame of the test video
    max_videos: int | None = None         # None: every test video
    skip_reference_frame: bool = True     # frame 0 is the condition: leave it out of every metric
    ssim_mode: str = "per_channel"        # App. J Eq. 13-14; "grayscale" is DisCo's
    frechet_method: str = "sqrtm"         # "eigh" is the same quantity, faster for 2048-d on a CPU
    seed: int = 0                         # noise of video i: seed + i (the same for mtvcraft and null_motion)

    def __post_init__(self) -> None:
        if self.num_frames is not None and (self.num_frames < 9 or (self.num_frames - 1) % 8):
            raise ValueError(f"EvalProtocol.num_frames must be None (whole videos) or 1 + 8k (e.g. 33, 49), "
                             f"got {self.num_frames}")
        try:  # window None: the model's own
            check_window(self.window, self.overlap)
        except ValueError as err:
            raise ValueError(f"EvalProtocol.window / overlap: {err}") from err
        if self.height < 16 or self.width < 16:
            raise ValueError(f"EvalProtocol.height and width must be >= 16, got {self.height}x{self.width}")
        if self.num_inference_steps < 1 or self.frame_stride < 1:
            raise ValueError("EvalProtocol.num_inference_steps and frame_stride must be >= 1")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"EvalProtocol.max_videos must be >= 1 or None, got {self.max_videos}")
        if self.ssim_mode not in ("per_channel", "grayscale"):
            raise ValueError(f"EvalProtocol.ssim_mode must be 'per_channel' or 'grayscale', got {self.ssim_mode!r}")
        if self.frechet_method not in ("sqrtm", "eigh"):
            raise ValueError(f"EvalProtocol.frechet_method must be 'sqrtm' or 'eigh', got {self.frechet_method!r}")

    @classmethod
    def tiny(cls, **changes) -> EvalProtocol:
        """Laptop preset for the tiny demo model: 4 whole videos at 48 x 64, DDIM 50, eigh Fréchet."""
        base = dict(height=48, width=64, num_inference_steps=50, max_videos=4, frechet_method="eigh")
        return cls(**{**base, **changes})

    def with_changes(self, **changes) -> EvalProtocol:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def first_frame_evaluated(self) -> int:
        return 1 if self.skip_reference_frame else 0


# ---- the null-motion baseline ------------------------------------------------------------------------------
class NullMotionPipeline(MTVCraftPipeline):
    """The same model sampled with the unconditional motion tokens c_m∅ at every step: eps(∅) (Sec. 3.2).

    ``MTVCraftPipeline`` has no switch for this; the override keeps ``mtvcraft_pipeline.py`` unchanged. With every
    motion dropped the CFG combination eps(∅) + w (eps(∅) - eps(∅)) is eps(∅), so one evaluation suffices.
    """

    @classmethod
    def like(cls, pipe: MTVCraftPipeline) -> NullMotionPipeline:
        return cls(pipe.model, pipe.latent_map, pipe.tokenizer, pipe.scheduler)

    def guided_prediction(self, latents, t, reference, tokens, motion_scale):
        drop = torch.zeros(latents.shape[0], dtype=torch.bool, device=latents.device)
        return self.model(latents, reference, tokens, t, motion_mask=drop, mean_joints=self.rope_joints).sample


class WanNullMotionPipeline(WanMotionPipeline):
    """MV-DiT-18B with c_m∅ in place of the motion in every branch; the text CFG of the protocol stays:
    eps = eps(∅,∅) + w_t (eps(∅,t) - eps(∅,∅)), so the baseline differs from ``mtvcraft`` by the motion only."""

    @classmethod
    def like(cls, pipe: WanMotionPipeline) -> WanNullMotionPipeline:
        return cls(pipe.model, pipe.latent_map, pipe.conditioner, pipe.tokenizer, pipe.scheduler)

    def model_prediction(self, latents, t, cond, motion_keep, text_keep):
        return super().model_prediction(latents, t, cond, torch.zeros_like(motion_keep), text_keep)

    def guided_prediction(self, latents, t, cond, motion_scale, text_scale):
        # With motion dropped everywhere eps(m,∅) = eps(∅,∅): the motion term vanishes, so skip its branch.
        return super().guided_prediction(latents, t, cond, 1.0, text_scale)


def null_motion_pipeline(pipe: MTVCraftPipeline) -> MTVCraftPipeline:
    """The null-motion baseline of ``pipe``'s backbone (CogVideoX: ``NullMotionPipeline``; Wan: ``WanNullMotionPipeline``)."""
    return WanNullMotionPipeline.like(pipe) if isinstance(pipe, WanMotionPipeline) else NullMotionPipeline.like(pipe)


def null_motion_unavailable(pipe: MTVCraftPipeline, num_frames: int) -> str | None:
    """Why the model cannot sample with c_m∅ at ``num_frames`` frames, or None when it can."""
    from pipeline.mvdit.latents import latent_frames

    uncond = getattr(pipe.model, "unconditional_motion_token", None)
    if uncond is None:
        return "not computed: the model has no unconditional motion tokens (17B release layout)"
    needed = latent_frames(num_frames, pipe.latent_map.temporal_factor) * pipe.model.config.num_joints
    if needed > uncond.shape[0]:
        return (f"not computed: c_m∅ covers {uncond.shape[0] // pipe.model.config.num_joints} latent frames, "
                f"{num_frames} frames need {needed // pipe.model.config.num_joints}")
    return None


# ---- inputs ---------------------------------------------------------------------------------------------------
def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop (T, H, W, 3) frames to the aspect ratio of height x width, then resize (area filter)."""
    h, w = frames.shape[1:3]
    scale = min(h / height, w / width)
    ch, cw = round(height * scale), round(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    cropped = frames[:, top:top + ch, left:left + cw]
    if (ch, cw) == (height, width):
        return np.ascontiguousarray(cropped)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in cropped])


def benchmark_clip(video: BenchmarkVideo, protocol: EvalProtocol, settings: PipelineSettings,
              benchmark: str) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth uint8 (N, height, width, 3), joints (N, 24, 3)) of the protocol's frames of one test video:
    every ``frame_stride``-th frame of the whole video, or of its first ``num_frames`` (x stride)."""
    n, stride = protocol.num_frames, protocol.frame_stride
    needed = None if n is None else (n - 1) * stride + 1
    what = f"{benchmark} video {video.id} ({video.source})"
    wanted = "every frame" if n is None else f"{needed} frames (num_frames={n}, frame_stride={stride})"
    try:
        frames = video.load_frames(needed)
    except ValueError as err:
        raise ValueError(f"{what}: {err}; the protocol needs {wanted}") from err
    if needed is not None and len(frames) < needed:
        raise ValueError(f"{what} has {len(frames)} frames; the protocol needs {wanted}")
    loaded = len(frames)
    frames = frames[::stride]
    sidecar = None if video.joints is None else video.joints[:loaded:stride]
    if sidecar is not None and len(sidecar) != len(frames):
        raise ValueError(f"{what}: its joints sidecar has {len(video.joints)} frames, the video {loaded}")
    joints = motion_joints(sidecar, frames, settings, what)
    return fit_frames(frames, protocol.height, protocol.width), joints


# ---- checkpoints ------------------------------------------------------------------------------------------------
def resolve_checkpoint(settings: PipelineSettings, checkpoint: str | Path | None) -> Path:
    """``checkpoint``, or the newest MV-DiT checkpoint of the ``mv_dit`` stage; a clear error when absent."""
    if checkpoint is None:
        from pipeline.mvdit.stage import current_mvdit_checkpoint, mvdit_dir

        found = current_mvdit_checkpoint(settings)
        if found is None:
            raise FileNotFoundError(f"no MV-DiT checkpoint under {mvdit_dir(settings)}: materialize mv_dit first "
                                    "or pass checkpoint=")
        return found
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (a train_mvdit .safetensors or a diffusers folder)")
    return path


def device() -> str:
    """Where the model and the metric networks run: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def animate_video(pipe: MTVCraftPipeline, reference: np.ndarray, joints: np.ndarray, protocol: EvalProtocol,
                  window: int, seed: int) -> np.ndarray:
    """Every frame the joints drive (a motion no longer than ``window``: its longest 1 + 8k), window by window."""
    call = dict(height=protocol.height, width=protocol.width, num_inference_steps=protocol.num_inference_steps,
                motion_guidance_scale=protocol.motion_guidance_scale,
                text_guidance_scale=protocol.text_guidance_scale, prompt=protocol.text_prompt)
    return animate_in_windows(pipe, reference, joints, window, protocol.overlap,
                              generator=torch.Generator().manual_seed(seed), **call)


def load_pipeline(checkpoint: Path) -> MTVCraftPipeline:
    if checkpoint.is_dir():
        return MTVCraftPipeline.from_pretrained(checkpoint, device=device())
    return load_train_checkpoint(checkpoint, device=device())


def run_id(checkpoint: Path, protocol: EvalProtocol) -> str:
    """12 hex digits from the checkpoint's identity (its SHA-256 file, else name/size/mtime) and the protocol."""
    from pipeline.core.checkpoints import checksum_path

    if checkpoint.is_file() and checksum_path(checkpoint).is_file():
        identity = checksum_path(checkpoint).read_text().strip()
    else:
        target = checkpoint / "config.json" if checkpoint.is_dir() else checkpoint
        stat = target.stat() if target.exists() else None
        identity = f"{checkpoint.resolve()}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    payload = json.dumps({"checkpoint": identity, "protocol": protocol.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---- metrics ----------------------------------------------------------------------------------------------------
@dataclass
class MethodScores:
    """One method's per-video paired metrics and set-level distribution metrics; strings are "not computed"."""

    per_video: list[dict[str, float | str]]
    overall: dict[str, float | str]
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (generated, real) samples


def _load_network(loader, weights: str | None, where: str):
    from pipeline.evaluation.metrics import NOT_COMPUTED, MissingWeights

    try:
        return loader(weights or None, where), None
    except MissingWeights as reason:
        return None, f"{NOT_COMPUTED}{reason}"


class MetricSuite:
    """The paper's six metrics with their networks loaded once, and the ground truth's features cached."""

    def __init__(self, weights: str, protocol: EvalProtocol, truths: list[np.ndarray]):
        from pipeline.evaluation.metrics import load_i3d, load_inception, load_lpips_alexnet

        self.protocol = protocol
        self.truths = truths
        self.device = device()
        self.lpips, self.lpips_reason = _load_network(load_lpips_alexnet, weights, self.device)
        self.inception, self.fid_reason = _load_network(load_inception, weights, self.device)
        self.i3d, self.i3d_reason = _load_network(load_i3d, weights, self.device)
        self._truth_features: dict[str, object] = {}

    def paired(self, generated: np.ndarray, truth: np.ndarray) -> dict[str, float | str]:
        from pipeline.evaluation.metrics import lpips_distance, psnr, ssim

        scores: dict[str, float | str] = {"psnr": psnr(generated, truth),
                                          "ssim": ssim(generated, truth, self.protocol.ssim_mode)}
        if self.lpips is None:
            scores["lpips"] = self.lpips_reason
        else:
            scores["lpips"] = lpips_distance(self.lpips, generated, truth, device=self.device)
        return scores

    def distribution(self, generated: list[np.ndarray]) -> dict[str, float | str]:
        from pipeline.evaluation.metrics import (
            NOT_COMPUTED,
            NotEnoughSamples,
            fid_from_features,
            fid_vid_from_features,
            fvd_from_features,
        )

        method = self.protocol.frechet_method
        out: dict[str, float | str] = {}
        if self.inception is None:
            out["fid"] = self.fid_reason
        else:
            truth = self._cached("fid", lambda: self._frames(self.truths))
            try:
                out["fid"] = fid_from_features(self._frames(generated), truth, method)
            except NotEnoughSamples as reason:
                out["fid"] = f"{NOT_COMPUTED}{reason}"
        if self.i3d is None:
            out["fvd"] = out["fid_vid"] = self.i3d_reason
            return out
        truth = self._cached("i3d", lambda: self._segments(self.truths))
        gen = self._segments(generated)
        for name, formula in (("fvd", fvd_from_features), ("fid_vid", fid_vid_from_features)):
            try:
                out[name] = formula(gen, truth, method)
            except NotEnoughSamples as reason:
                out[name] = f"{NOT_COMPUTED}{reason}"
        return out

    def _frames(self, videos: list[np.ndarray]) -> np.ndarray:
        from pipeline.evaluation.metrics import inception_features

        return inception_features(self.inception, videos, device=self.device)

    def _segments(self, videos: list[np.ndarray]) -> list[np.ndarray]:
        from pipeline.evaluation.metrics import i3d_segment_features

        return [i3d_segment_features(self.i3d, v, device=self.device) for v in videos]

    def _cached(self, key: str, compute):
        if key not in self._truth_features:
            self._truth_features[key] = compute()
        return self._truth_features[key]

    def score(self, generated: list[np.ndarray]) -> MethodScores:
        from pipeline.evaluation.metrics import sample_counts

        per_video = [self.paired(g, t) for g, t in zip(generated, self.truths)]
        overall: dict[str, float | str] = {}
        for name in ("psnr", "ssim", "lpips"):
            values = [v[name] for v in per_video]
            overall[name] = values[0] if isinstance(values[0], str) else float(np.mean(values))
        overall.update(self.distribution(generated))
        ours, real = sample_counts(generated), sample_counts(self.truths)
        return MethodScores(per_video, overall, {m: (ours[m], real[m]) for m in ours})


# ---- the stage -----------------------------------------------------------------------------------------------
def evaluate_benchmark(settings: PipelineSettings, benchmark: str = "generated", checkpoint: str | Path | None = None,
                       protocol: EvalProtocol | None = None, log: Log = default_log, *,
                       dataset_root: str | Path | None = None, generated_seed: int = 0) -> StageResult:
    """Animate each test video of ``benchmark`` under ``protocol`` and score it beside the two baselines.

    ``checkpoint``: a ``train_mvdit`` checkpoint or a diffusers MV-DiT folder (None: the newest of the
    ``mv_dit`` stage). ``dataset_root`` overrides ``MTVCRAFT_TIKTOK`` / ``MTVCRAFT_UBC_FASHION``. Writes the
    rows to the ``benchmark_eval`` Lance table and the report, PNG strip and side-by-side mp4 under
    ``<data_root>/benchmark_eval/<benchmark>/<run id>/``; returns the report as the result's preview.
    """
    from pipeline.core.video_io import write_mp4

    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    protocol = protocol or EvalProtocol()
    videos = load_benchmark(benchmark, settings, dataset_root, protocol.max_videos, generated_seed)
    checkpoint = resolve_checkpoint(settings, checkpoint)
    run = run_id(checkpoint, protocol)
    log(f"benchmark_eval {benchmark}: {len(videos)} videos, checkpoint {checkpoint}, run {run}")
    pipe = load_pipeline(checkpoint)
    window = protocol.window or longest_pass(pipe)
    null_reason = null_motion_unavailable(pipe, window)
    null_pipe = null_motion_pipeline(pipe) if null_reason is None else None

    skip = slice(protocol.first_frame_evaluated, None)
    truths, outputs = [], {m: [] for m in METHODS}
    first: dict[str, np.ndarray] = {}
    for index, video in enumerate(videos):
        truth, joints = benchmark_clip(video, protocol, settings, benchmark)
        reference = truth[0]
        ours = animate_video(pipe, reference, joints, protocol, window, protocol.seed + index)
        truth = truth[:len(ours)]  # a motion no longer than one window is sampled over its longest 1 + 8k frames
        generated = {"mtvcraft": ours, "copy_reference": np.repeat(reference[None], len(ours), axis=0)}
        if null_pipe is not None:
            generated["null_motion"] = animate_video(null_pipe, reference, joints, protocol, window,
                                                     protocol.seed + index)
        if index == 0:
            first = {"truth": truth, **generated}
        truths.append(truth[skip])
        for method, frames in generated.items():
            outputs[method].append(frames[skip])
        log(f"benchmark_eval {benchmark}: video {index + 1}/{len(videos)} {video.id} done ({len(ours)} frames)")

    suite = MetricSuite(settings.weights, protocol, truths)
    scores = {m: suite.score(outputs[m]) for m in METHODS if outputs[m]}
    if null_reason is not None:
        scores["null_motion"] = MethodScores([], {name: null_reason for name in METRIC_COLUMNS})

    out_dir = settings.root / "benchmark_eval" / benchmark / run
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [len(t) for t in truths]
    rows = result_rows(benchmark, run, checkpoint, protocol, videos, scores, frames)
    uri = settings.table_uri(TABLE)
    version = tables.upsert(uri, rows)
    png = strip_png(first)
    previews.save_png(png, out_dir / "strip.png")
    write_mp4(out_dir / "side_by_side.mp4", side_by_side(first), fps=videos[0].fps)
    report = report_markdown(benchmark, run, checkpoint, protocol, {m: s.overall for m, s in scores.items()},
                             len(videos), frames, {m: s.counts for m, s in scores.items() if s.counts}, window)
    (out_dir / "report.md").write_text(report)
    log(f"benchmark_eval {benchmark}: wrote {out_dir / 'report.md'} and table {uri} version {version}")
    aggregates = {m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.overall.items()}
                  for m, s in scores.items()}
    return StageResult(TABLE, uri, version, tables.count(uri), len(videos), 0,
                       preview_markdown=report + "\n\n" + previews.png_markdown(png, f"{benchmark} first video"),
                       preview_png=png,
                       extra={"benchmark": benchmark, "run_id": run, "checkpoint": str(checkpoint),
                              "report": str(out_dir / "report.md"), "strip": str(out_dir / "strip.png"),
                              "side_by_side": str(out_dir / "side_by_side.mp4"), "aggregates": aggregates,
                              "sample_counts": {m: s.counts for m, s in scores.items()}, "window": window,
                              "protocol": protocol.to_dict()})


# ---- rows ------------------------------------------------------------------------------------------------------
def _numbers_and_reasons(scores: dict[str, float | str]) -> tuple[dict[str, float | None], dict[str, str]]:
    numbers = {m: (None if isinstance(scores.get(m), str) else scores.get(m)) for m in METRIC_COLUMNS}
    reasons = {m: v for m, v in scores.items() if isinstance(v, str)}
    return numbers, reasons


def result_rows(benchmark: str, run: str, checkpoint: Path, protocol: EvalProtocol, videos: list[BenchmarkVideo],
                scores: dict[str, MethodScores], frames_evaluated: list[int]) -> pa.Table:
    """Per-video rows and one aggregate row per method, in the ``BENCHMARK_EVAL`` schema; ``frames_evaluated``
    per video (the aggregate row holds their sum)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = []
    for method, method_scores in scores.items():
        entries = [(v.id, "video", s, n) for v, s, n in zip(videos, method_scores.per_video, frames_evaluated)]
        entries.append((ALL_VIDEOS, "aggregate", method_scores.overall, sum(frames_evaluated)))
        for video_id, kind, values, frames in entries:
            numbers, reasons = _numbers_and_reasons(values)
            records.append({
                "id": "|".join((benchmark, method, video_id, run)), "benchmark": benchmark, "method": method,
                "video_id": video_id, "run_id": run, "row_kind": kind, "checkpoint": str(checkpoint),
                "num_videos": 1 if kind == "video" else len(videos), "frames_evaluated": frames,
                "height": protocol.height, "width": protocol.width,
                "num_inference_steps": protocol.num_inference_steps,
                "motion_guidance_scale": protocol.motion_guidance_scale, **numbers,
                "not_computed": json.dumps(reasons, sort_keys=True),
                "protocol": json.dumps(protocol.to_dict(), sort_keys=True), "evaluated_at": now,
            })
    return pa.Table.from_pylist(records, schema=BENCHMARK_EVAL)


# ---- report ----------------------------------------------------------------------------------------------------
def _cell(value: float | str | None, metric: str, notes: list[str]) -> str:
    if isinstance(value, str):
        if value not in notes:
            notes.append(value)
        return f"n/c[{notes.index(value) + 1}]"
    if value is None:
        return "-"
    return f"{value:.{DECIMALS[metric]}f}"


def below_dimension(counts: dict[str, tuple[int, int]], metric: str) -> bool:
    """Whether either side of ``metric`` has fewer samples than its feature dimension (a rank-deficient covariance)."""
    from pipeline.evaluation.metrics import FEATURE_DIMS

    return metric in counts and min(counts[metric]) < FEATURE_DIMS[metric]


def _frames_text(frames_evaluated: int | list[int]) -> str:
    if isinstance(frames_evaluated, int):
        return f"{frames_evaluated} frames each"
    low, high = min(frames_evaluated), max(frames_evaluated)
    each = f"{low}" if low == high else f"{low}-{high}"
    return f"{sum(frames_evaluated)} frames in all ({each} per video)"


def report_markdown(benchmark: str, run: str, checkpoint: Path, protocol: EvalProtocol,
                    overall: dict[str, dict[str, float | str]], num_videos: int, frames_evaluated: int | list[int],
                    counts: dict[str, dict[str, tuple[int, int]]] | None = None, window: int | None = None) -> str:
    """The Table 1 / Table 3 style Markdown: the paper's rows (quoted) above this run's rows (measured), then each
    distribution metric with its sample counts and feature dimension. A distribution metric fitted to fewer
    samples than dimensions is not put in the row beside the published values: its cell says "n < d" and the
    number stands in the counts table, marked."""
    counts = counts or {}
    span = ("whole videos" + (f", in windows of {window} frames overlapping by {protocol.overlap}" if window else "")
            if protocol.num_frames is None else f"the first {protocol.num_frames} frames of each video")
    header = "| Model | Source | " + " | ".join(METRIC_HEADERS) + " |"
    lines = [f"## benchmark_eval: {benchmark} (run {run})", "",
             f"Checkpoint `{checkpoint.name}`; {num_videos} videos, {_frames_text(frames_evaluated)} evaluated at "
             f"{protocol.height}x{protocol.width} ({span}; frame 0 "
             f"{'left out: it is the reference' if protocol.skip_reference_frame else 'included'}); DDIM "
             f"{protocol.num_inference_steps} steps, motion CFG {protocol.motion_guidance_scale}, stride "
             f"{protocol.frame_stride}, SSIM {protocol.ssim_mode}. Text prompt \"{protocol.text_prompt}\" / text CFG "
             f"{protocol.text_guidance_scale} apply to the 18B model only (the 6B MV-DiT has no text branch).", "",
             header, "|" + "---|" * (2 + len(METRIC_COLUMNS))]
    quoted = paper_rows(benchmark)
    if quoted:
        source = f"paper {PAPER_TABLES[benchmark][0]}, quoted"
        lines += [f"| {row[0]} | {source} | " + " | ".join(row[1:]) + " |" for row in quoted]
    notes: list[str] = []
    for method in METHODS:
        if method not in overall:
            continue
        cells = ["n < d (below)" if below_dimension(counts.get(method, {}), m) and not isinstance(
                     overall[method].get(m), str) else _cell(overall[method].get(m), m, notes)
                 for m in METRIC_COLUMNS]
        name = f"**{METHOD_LABELS[method]}**" if method == "mtvcraft" else METHOD_LABELS[method]
        lines.append(f"| {name} | this run | " + " | ".join(cells) + " |")
    lines.append("")
    if quoted:
        lines.append(f"Rows marked \"quoted\" are copied from the paper's {PAPER_TABLES[benchmark][0]}, not "
                     "measured here; they come from full-size models on the full test set.")
    else:
        lines.append("The paper has no generated benchmark, so no published row is comparable; read our model "
                     "against the two baselines.")
    lines += [f"n/c[{i + 1}]: {note}" for i, note in enumerate(notes)]
    if counts:
        lines += ["", *sample_count_table(overall, counts)]
    return "\n".join(lines) + "\n"


def sample_count_table(overall: dict[str, dict[str, float | str]],
                       counts: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Markdown lines: every distribution metric's value beside its sample counts and feature dimension."""
    from pipeline.evaluation.metrics import FEATURE_DIMS, SAMPLE_UNITS

    lines = ["### Distribution metrics: samples and feature dimension", "",
             "| Model | metric | value | samples: generated / real | feature dim d | n >= d |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        for metric, header in zip(METRIC_COLUMNS, METRIC_HEADERS):
            if metric not in FEATURE_DIMS or metric not in counts.get(method, {}):
                continue
            value = overall[method].get(metric)
            shown = "n/c" if isinstance(value, str) else "-" if value is None else f"{value:.{DECIMALS[metric]}f}"
            ours, real = counts[method][metric]
            low = below_dimension(counts[method], metric)
            verdict = "no: rank-deficient covariance, not comparable with published values" if low else "yes"
            mark = " (n < d)" if low and shown != "n/c" else ""
            lines.append(f"| {METHOD_LABELS[method]} | {header} | {shown}{mark} "
                         f"| {ours} / {real} {SAMPLE_UNITS[metric]} | {FEATURE_DIMS[metric]} | {verdict} |")
    return lines


def strip_png(first: dict[str, np.ndarray], columns: int = 6) -> bytes:
    """PNG of the first video: rows reference | ground truth | MTVCraft (| null motion), at sampled frames."""
    truth = first["truth"]
    picks = np.linspace(0, len(truth) - 1, min(columns, len(truth))).round().astype(int)
    rows = [("reference", np.repeat(truth[:1], len(truth), 0)), ("ground truth", truth),
            ("MTVCraft", first["mtvcraft"])]
    if "null_motion" in first:
        rows.append(("null motion", first["null_motion"]))
    images, labels = [], []
    for name, frames in rows:
        for t in picks:
            images.append(frames[t])
            labels.append(f"{name} t={t}")
    height = min(160, max(96, truth.shape[1]))
    return previews.encode_png(previews.contact_sheet(images, columns=len(picks), height=height, labels=labels))


def side_by_side(first: dict[str, np.ndarray]) -> np.ndarray:
    """(T, H, k * W, 3) video: reference | ground truth | MTVCraft (| null motion)."""
    truth = first["truth"]
    parts = [np.repeat(truth[:1], len(truth), 0), truth, first["mtvcraft"]]
    if "null_motion" in first:
        parts.append(first["null_motion"])
    return np.concatenate(parts, axis=2)
