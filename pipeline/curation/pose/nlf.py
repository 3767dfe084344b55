"""NLF (Neural Localizer Fields, Sarandi & Pons-Moll 2024): the paper's pose estimator (Sec. 3.1, App. B).

Loads the released TorchScript model (``nlf_l_multi.torchscript``, person
detector inside) from a local path and runs it batched on RGB frames with the
App. B camera: 55 degree FoV on the longer side, centred principal point.
NLF returns every detected person per frame; the track keeps the one with the
highest detector box score and counts them all. NLF reports joint
uncertainties in millimetres; the track stores metres.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from models.motion.skeleton import NUM_JOINTS
from pipeline.core.camera import DEFAULT_FOV_DEG, camera_intrinsics
from pipeline.core.config import ENV_WEIGHTS, NLF_WEIGHTS_FILE, weights_folder
from pipeline.curation.pose.base import FrameDetections, PoseTrack, track_from_detections

# Per-frame outputs of detect_smpl_batched that the track needs.
_OUTPUT_KEYS = ("boxes", "pose", "trans", "joint_uncertainties")


def resolve_nlf_model_path(model_path: str | Path | None = None, weights_dir: str | Path | None = None) -> Path:
    """The NLF file: the setting ``nlf_model_path`` (a file, or a folder holding it), else
    ``$MTVCRAFT_WEIGHTS/nlf_l_multi.torchscript``. Missing -> FileNotFoundError naming both."""
    if model_path:
        path = Path(model_path).expanduser()
        if path.is_dir():
            path = path / NLF_WEIGHTS_FILE
    else:
        folder = weights_folder(weights_dir or None)
        if folder is None:
            raise FileNotFoundError(
                f"pose_backend 'nlf' needs the NLF TorchScript model {NLF_WEIGHTS_FILE}: set "
                f"nlf_model_path, or {ENV_WEIGHTS} to a folder holding {NLF_WEIGHTS_FILE}"
            )
        path = folder / NLF_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"NLF model not found at {path}: expected {NLF_WEIGHTS_FILE} (or nlf_s_multi.torchscript) "
            f"from the NLF release, via nlf_model_path or the {ENV_WEIGHTS} folder"
        )
    return path


class NLFPoses:
    """Production pose backend: the NLF TorchScript model on a GPU when there is one."""

    name = "nlf"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        weights_dir: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 16,
        fov_deg: float = DEFAULT_FOV_DEG,
        detector_threshold: float | None = None,
    ) -> None:
        """``device`` None picks CUDA when available; ``detector_threshold`` None keeps NLF's own (0.3)."""
        import torch
        import torchvision  # noqa: F401  registers the torchvision ops (NMS, ...) the TorchScript file calls

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = resolve_nlf_model_path(model_path, weights_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; NLF ships only in it
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load.*")
            self.model = torch.jit.load(str(path), map_location=self.device).eval()
        self.batch_size = batch_size
        self.fov_deg = fov_deg
        self.detector_threshold = detector_threshold
        self.backend = f"nlf:{path.name}"

    def estimate(self, video_path: str, start_frame: int, end_frame: int) -> PoseTrack:
        """Decode frames ``[start_frame, end_frame)`` and run NLF on them ``batch_size`` at a time."""
        from pipeline.core.video_io import iter_frames

        if not 0 <= start_frame <= end_frame:
            raise ValueError(f"bad frame range [{start_frame}, {end_frame})")
        tracks = []
        next_index = start_frame
        for batch in _batches(iter_frames(video_path, start=start_frame, end=end_frame), self.batch_size):
            tracks.append(self.estimate_frames(np.stack(batch), first_index=next_index))
            next_index += len(batch)
        if next_index != end_frame:
            raise ValueError(
                f"{video_path}: asked for frames [{start_frame}, {end_frame}) but the video "
                f"ended at frame {next_index}"
            )
        if not tracks:
            return track_from_detections([], [], self.backend)
        return PoseTrack.concat(tracks)

    def estimate_frames(self, frames: np.ndarray, first_index: int = 0) -> PoseTrack:
        """Run NLF on ``frames`` (N, H, W, 3) uint8 RGB; rows are numbered from ``first_index``."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
        height, width = frames.shape[1:3]
        intrinsics = camera_intrinsics(width, height, self.fov_deg)
        detections: list[FrameDetections] = []
        for start in range(0, len(frames), self.batch_size):
            detections += self._detect(frames[start : start + self.batch_size], intrinsics)
        frame_index = np.arange(first_index, first_index + len(frames))
        return track_from_detections(frame_index, detections, self.backend)

    def _detect(self, frames: np.ndarray, intrinsics: np.ndarray) -> list[FrameDetections]:
        """One detect_smpl_batched call -> everyone found in each frame."""
        import torch

        images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        images = images.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8 RGB, as NLF expects
        matrix = torch.as_tensor(intrinsics, dtype=torch.float32, device=self.device)[None]
        options = {}
        if self.detector_threshold is not None:
            options["detector_threshold"] = float(self.detector_threshold)
        with torch.inference_mode():
            outputs = self.model.detect_smpl_batched(
                images, intrinsic_matrix=matrix, default_fov_degrees=float(self.fov_deg), **options
            )
        for key in _OUTPUT_KEYS:
            if key not in outputs or len(outputs[key]) != len(frames):
                raise RuntimeError(
                    f"NLF output '{key}' missing or not one entry per frame; is {self.backend} an NLF model?"
                )
        found = []
        for i in range(len(frames)):
            boxes = outputs["boxes"][i].float().cpu().numpy()
            found.append(
                FrameDetections(
                    pose=outputs["pose"][i].float().cpu().numpy().reshape(-1, NUM_JOINTS, 3),
                    transl=outputs["trans"][i].float().cpu().numpy().reshape(-1, 3),
                    joint_uncertainty=outputs["joint_uncertainties"][i].float().cpu().numpy() / 1000.0,
                    score=boxes[:, 4],
                )
            )
        return found


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterable[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
