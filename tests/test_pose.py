"""Pose stage backends: the PoseTrack contract, the App. B camera, ground-truth sidecars and
the NLF TorchScript loader (tested for real on a tiny scripted model with NLF's call signature)."""

from __future__ import annotations

import math
import sys
import types
import warnings
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor

from pipeline.curation.pose import PoseEstimator, PoseTrack, camera_intrinsics, make_pose_estimator
from pipeline.curation.pose.annotations import AnnotationPoses, sidecar_path
from pipeline.curation.pose.nlf import NLFPoses

# --------------------------------------------------------------------------- camera (App. B)


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1080, 1920)])
def test_camera_intrinsics_puts_long_side_edge_at_half_fov(width, height):
    K = camera_intrinsics(width, height)
    focal = 1920 / (2 * math.tan(math.radians(27.5)))
    assert focal == pytest.approx(1844.1, abs=0.05)
    np.testing.assert_allclose(K, [[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    # A ray 27.5 degrees off the axis along the long side projects half the long side from the centre.
    t = math.tan(math.radians(27.5))
    ray = np.array([[t, 0.0, 1.0]]) if width >= height else np.array([[0.0, t, 1.0]])
    uv, _ = cv2.projectPoints(ray, np.zeros(3), np.zeros(3), K, None)
    offset = uv[0, 0] - K[:2, 2]
    np.testing.assert_allclose(np.abs(offset).max(), max(width, height) / 2, rtol=1e-9)


def test_camera_intrinsics_rejects_bad_input():
    with pytest.raises(ValueError, match="fov"):
        camera_intrinsics(640, 480, fov_deg=180)
    with pytest.raises(ValueError, match="positive"):
        camera_intrinsics(0, 480)


# --------------------------------------------------------------------------- PoseTrack


def _track(frames, num_people, backend="test"):
    t = len(frames)
    pose = np.ones((t, 24, 3), np.float32)
    transl = np.ones((t, 3), np.float32)
    unc = np.ones((t, 24), np.float32)
    absent = np.asarray(num_people) == 0
    pose[absent], transl[absent], unc[absent] = np.nan, np.nan, np.nan
    return PoseTrack(np.asarray(frames, np.int64), np.asarray(num_people, np.int16), pose, transl, unc, backend)


def test_posetrack_validate_and_concat():
    joined = PoseTrack.concat([_track([0, 1, 2], [1, 0, 2]), _track([3, 4], [1, 1])])
    assert len(joined) == 5
    np.testing.assert_array_equal(joined.frame_index, np.arange(5))
    np.testing.assert_array_equal(joined.num_people, [1, 0, 2, 1, 1])
    assert np.isnan(joined.pose[1]).all() and np.isfinite(joined.pose[[0, 2, 3, 4]]).all()

    with pytest.raises(ValueError, match="different backends"):
        PoseTrack.concat([_track([0], [1], "a"), _track([1], [1], "b")])
    with pytest.raises(ValueError, match="strictly increasing"):
        PoseTrack.concat([_track([0, 1], [1, 1]), _track([1], [1])])
    bad = _track([0, 1], [1, 1])
    bad.pose = bad.pose.astype(np.float64)
    with pytest.raises(ValueError, match="pose must be float32"):
        bad.validate()
    bad = _track([0, 1], [1, 1])
    bad.num_people[1] = 0  # a no-person row holding numbers
    with pytest.raises(ValueError, match="NaN on frames with no person"):
        bad.validate()
    assert len(PoseTrack.concat([_track([], [])]).validate()) == 0


# --------------------------------------------------------------------------- annotations backend


def _write_sidecar(video, with_uncertainty=True):
    """7 frames, 2 people: person 0 in frames 0-3, person 1 in frames 2-5, nobody in frame 6."""
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(7, 2, 24, 3)).astype(np.float32)
    transl = rng.normal(size=(7, 2, 3)).astype(np.float32)
    unc = rng.uniform(0.01, 0.05, size=(7, 2, 24)).astype(np.float32)
    unc[2, 1] = 0.001  # frame 2: person 1 is the more certain one
    unc[3, 0] = 0.001  # frame 3: person 0 is
    present = np.zeros((7, 2), bool)
    present[0:4, 0] = True
    present[2:6, 1] = True
    pose[~present], transl[~present], unc[~present] = np.nan, np.nan, np.nan
    arrays = {"pose": pose, "transl": transl, "fps": np.array(25.0)}
    if with_uncertainty:
        arrays["joint_uncertainty"] = unc
    np.savez(sidecar_path(video), **arrays)
    return pose, transl, unc


def test_annotations_pick_most_certain_person_and_slice_range(tmp_path):
    video = tmp_path / "clip.mp4"
    pose, transl, unc = _write_sidecar(video)
    assert sidecar_path(video) == tmp_path / "clip.smpl.npz"
    backend = make_pose_estimator("annotations")
    assert isinstance(backend, PoseEstimator)

    track = backend.estimate(str(video), 2, 7)
    assert track.backend == "annotations"
    np.testing.assert_array_equal(track.frame_index, [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(track.num_people, [2, 2, 1, 1, 0])
    chosen = [(2, 1), (3, 0), (4, 1), (5, 1)]  # (frame, person)
    for row, (frame, person) in enumerate(chosen):
        np.testing.assert_array_equal(track.pose[row], pose[frame, person])
        np.testing.assert_array_equal(track.transl[row], transl[frame, person])
        np.testing.assert_array_equal(track.joint_uncertainty[row], unc[frame, person])
    assert np.isnan(track.pose[4]).all() and np.isnan(track.transl[4]).all()
    assert np.isnan(track.joint_uncertainty[4]).all()

    full = backend.estimate(str(video), 0, 7)
    np.testing.assert_array_equal(full.num_people, [1, 1, 2, 2, 1, 1, 0])
    np.testing.assert_array_equal(full.pose[2:], track.pose)


def test_annotations_without_uncertainty(tmp_path):
    video = tmp_path / "clip.mp4"
    pose, _, _ = _write_sidecar(video, with_uncertainty=False)
    track = AnnotationPoses().estimate(str(video), 2, 4)
    assert track.backend == "annotations(no-uncertainty)"
    np.testing.assert_array_equal(track.joint_uncertainty, 0.0)
    np.testing.assert_array_equal(track.pose, pose[2:4, 0])  # ties: the first person in the file


def test_annotations_errors_name_the_file(tmp_path):
    video = tmp_path / "clip.mp4"
    with pytest.raises(FileNotFoundError, match=r"clip\.smpl\.npz"):
        AnnotationPoses().estimate(str(video), 0, 1)
    _write_sidecar(video)
    with pytest.raises(ValueError, match=r"holds 7 frames.*\[3, 9\)"):
        AnnotationPoses().estimate(str(video), 3, 9)
    np.savez(sidecar_path(video), pose=np.zeros((3, 1, 72), np.float32), transl=np.zeros((3, 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"'pose' must be \(T, P, 24, 3\)"):
        AnnotationPoses().estimate(str(video), 0, 1)


# --------------------------------------------------------------------------- NLF backend


class TinyNLF(torch.nn.Module):
    """NLF's call signature and output shapes with outputs that depend on the input:
    people count = red value of pixel (0, 0); person k's box score = ((k+1) * 0.37) mod 1;
    pose = frame mean / 255 * 0.5 + 0.01 k; trans = (fx, cx, cy) / 1000 + k (echoes K);
    joint uncertainty = (k+1) * 10 + joint index, in millimetres."""

    def __init__(self):
        super().__init__()
        self.pose_scale = torch.nn.Parameter(torch.full((72,), 0.5))

    def forward(self, frames: Tensor) -> Tensor:
        return frames

    @torch.jit.export
    def detect_smpl_batched(
        self,
        frames: Tensor,
        intrinsic_matrix: Optional[Tensor] = None,
        default_fov_degrees: float = 55.0,
        detector_threshold: float = 0.0,  # real NLF: 0.3; 0 here so every scripted person counts
    ) -> Dict[str, List[Tensor]]:
        assert frames.dtype == torch.uint8 and frames.dim() == 4 and frames.shape[1] == 3
        assert intrinsic_matrix is not None and intrinsic_matrix.shape == (1, 3, 3)
        K = intrinsic_matrix[0]
        out: Dict[str, List[Tensor]] = {"boxes": [], "pose": [], "trans": [], "joint_uncertainties": [], "betas": []}
        for i in range(frames.shape[0]):
            frame = frames[i]
            person = torch.arange(int(frame[0, 0, 0]), dtype=torch.float32)
            score = torch.remainder((person + 1.0) * 0.37, 1.0)
            person = person[score >= detector_threshold]
            score = score[score >= detector_threshold]
            n = person.shape[0]
            side = torch.full_like(person, 20.0)
            out["boxes"].append(torch.stack([person, person, side, side, score], 1))
            level = frame.float().mean() / 255.0
            out["pose"].append(level * self.pose_scale[None, :] + 0.01 * person[:, None])
            camera = torch.stack([K[0, 0], K[0, 2], K[1, 2]])
            out["trans"].append(camera[None, :].expand(n, 3) / 1000.0 + person[:, None])
            joint = torch.arange(24, dtype=torch.float32)
            out["joint_uncertainties"].append((person[:, None] + 1.0) * 10.0 + joint[None, :])
            out["betas"].append(torch.zeros(n, 10))
        return out


@pytest.fixture(scope="module")
def nlf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "nlf_l_multi.torchscript"
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is NLF's release format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(TinyNLF()).save(str(path))
    return path


def _frames(counts, height=6, width=10):
    """Frames whose pixel (0, 0) is (count, 7, 9): a BGR mix-up would read 9 people."""
    frames = np.stack([np.full((height, width, 3), 20 * t + 5, np.uint8) for t in range(len(counts))])
    frames[:, 0, 0] = np.stack([np.asarray(counts), np.full(len(counts), 7), np.full(len(counts), 9)], 1)
    return frames


def _expected_primary(frame, count, K):
    scores = [((k + 1) * 0.37) % 1.0 for k in range(count)]
    k = int(np.argmax(scores))
    pose = np.full(72, frame.astype(np.float64).mean() / 255.0 * 0.5) + 0.01 * k
    transl = np.array([K[0, 0], K[0, 2], K[1, 2]]) / 1000.0 + k
    unc_m = ((k + 1) * 10.0 + np.arange(24)) / 1000.0
    return pose.reshape(24, 3), transl, unc_m


def test_nlf_loads_torchscript_and_builds_track(nlf_file):
    counts = [3, 0, 1, 2, 0]
    frames = _frames(counts)
    backend = make_pose_estimator("nlf", model_path=nlf_file, device="cpu", batch_size=2)
    assert isinstance(backend, NLFPoses) and isinstance(backend, PoseEstimator)
    track = backend.estimate_frames(frames, first_index=10)

    assert track.backend == "nlf:nlf_l_multi.torchscript"
    np.testing.assert_array_equal(track.frame_index, np.arange(10, 15))
    np.testing.assert_array_equal(track.num_people, counts)
    K = camera_intrinsics(10, 6)
    assert K[0, 2] == 4.5 and K[1, 2] == 2.5
    for t, count in enumerate(counts):
        if count == 0:
            assert np.isnan(track.pose[t]).all() and np.isnan(track.transl[t]).all()
            assert np.isnan(track.joint_uncertainty[t]).all()
            continue
        pose, transl, unc = _expected_primary(frames[t], count, K)
        np.testing.assert_allclose(track.pose[t], pose, atol=1e-6)
        np.testing.assert_allclose(track.transl[t], transl, rtol=1e-6)  # K passed through
        np.testing.assert_allclose(track.joint_uncertainty[t], unc, rtol=1e-6)  # mm -> m
    # the primary is not simply the first detection: frame 0 keeps person 1 (score 0.74)
    assert track.joint_uncertainty[0, 0] == pytest.approx(0.020)

    one_batch = NLFPoses(nlf_file, device="cpu", batch_size=8).estimate_frames(frames, first_index=10)
    np.testing.assert_array_equal(one_batch.pose, track.pose)


def test_nlf_forwards_detector_threshold(nlf_file):
    track = NLFPoses(nlf_file, device="cpu", detector_threshold=0.5).estimate_frames(_frames([3, 2, 1]))
    np.testing.assert_array_equal(track.num_people, [1, 1, 0])  # only score 0.74 passes 0.5


def test_nlf_estimate_decodes_video_in_batches(nlf_file, monkeypatch):
    counts = [1, 2, 0, 3, 1, 2, 1]
    frames = _frames(counts)
    fake = types.ModuleType("pipeline.core.video_io")
    fake.iter_frames = lambda path, start=0, end=None: iter(frames[start:end])
    monkeypatch.setitem(sys.modules, "pipeline.core.video_io", fake)
    backend = NLFPoses(nlf_file, device="cpu", batch_size=3)

    track = backend.estimate("clip.mp4", 1, 6)
    direct = backend.estimate_frames(frames[1:6], first_index=1)
    np.testing.assert_array_equal(track.frame_index, np.arange(1, 6))
    np.testing.assert_array_equal(track.num_people, counts[1:6])
    np.testing.assert_array_equal(track.pose, direct.pose)
    assert len(backend.estimate("clip.mp4", 4, 4)) == 0
    with pytest.raises(ValueError, match="ended at frame 7"):
        backend.estimate("clip.mp4", 5, 9)


def test_nlf_missing_model_names_setting_and_file(tmp_path, monkeypatch, nlf_file):
    with pytest.raises(FileNotFoundError, match=r"nlf_l_multi\.torchscript.*nlf_model_path.*MTVCRAFT_WEIGHTS"):
        NLFPoses(tmp_path / "missing.torchscript")
    monkeypatch.delenv("MTVCRAFT_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"nlf_model_path.*MTVCRAFT_WEIGHTS.*nlf_l_multi\.torchscript"):
        NLFPoses()
    monkeypatch.setenv("MTVCRAFT_WEIGHTS", str(nlf_file.parent))  # the weights folder holds the file
    assert NLFPoses(device="cpu").backend == "nlf:nlf_l_multi.torchscript"


def test_unknown_backend_names_the_setting():
    with pytest.raises(ValueError, match=r"pose_backend.*'openpose'.*annotations.*nlf"):
        make_pose_estimator("openpose")


def test_pose_stage_recomputes_mediapipe_videos_whose_frame_step_changed(tmp_path):
    """Stored poses count as done only when MediaPipe ran with the current ``pose_frame_step``
    (the step is part of the backend name); other backends' rows stay done."""
    from pipeline.core import tables
    from pipeline.curation import stages as curation

    def rows(video_id: str, backend: str):
        track = PoseTrack(np.arange(2, dtype=np.int64), np.ones(2, np.int16), np.zeros((2, 24, 3), np.float32),
                          np.zeros((2, 3), np.float32), np.full((2, 24), 0.05, np.float32), backend)
        return curation.pose_rows(video_id, track)

    uri = str(tmp_path / "poses.lance")
    assert curation._done_pose_video_ids(uri, 1) == set()
    for video_id, backend in [("a", "mediapipe:0.10.21:pose_landmark_full+smpl_ik"),
                              ("b", "mediapipe:0.10.21:pose_landmark_full+step2+smpl_ik+people:x_every5"),
                              ("c", "annotations"), ("d", "nlf:nlf_l_multi.torchscript")]:
        tables.upsert(uri, rows(video_id, backend))
    assert curation._done_pose_video_ids(uri, 1) == {"a", "c", "d"}
    assert curation._done_pose_video_ids(uri, 2) == {"b", "c", "d"}
    assert curation._done_pose_video_ids(uri, 3) == {"c", "d"}
