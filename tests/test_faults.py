"""Faults an operator meets, with real process deaths (SIGKILL: no ``finally``, no ``atexit``).

- The pose stage killed right after its first commit re-runs to exactly the table of an
  uninterrupted run (content-derived ids + merge_insert: no duplicates, no missing rows).
- A Ray actor killed in the middle of an item is restarted, the item retried, the stage completes.
- 4DMoT training killed while writing a checkpoint resumes from the last complete one and ends
  with the uninterrupted run's weights; a corrupted checkpoint is refused with a clear error.
- Bad settings are rejected when loaded, naming the setting; the webserver binds 127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, child_env, connected_ray_cluster, require_executable

from pipeline.core import tables
from pipeline.core.checkpoints import CorruptCheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint
from pipeline.core.config import ConfigError, PipelineSettings
from pipeline.curation import ingest
from pipeline.curation import stages as curation


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root (its own process group)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout, start_new_session=True)


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


# ============================================================================ curation stages

@pytest.fixture(scope="module")
def ray_node():
    """One Ray node on loopback that the test and its subprocesses share: a killed driver leaves it running."""
    with connected_ray_cluster("mtv_faults_", [dict(num_cpus=2)]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def segmented(ray_node, tiny_sample, tmp_path_factory):
    """A data root holding raw_videos and shots of the tiny sample: the input of the pose stage."""
    root = tmp_path_factory.mktemp("segmented")
    settings = PipelineSettings(data_root=str(root), raw_videos=str(tiny_sample.root / "videos"),
                                ray_address=ray_node.address).validated()
    ingest.ingest_raw_videos(settings)
    curation.segment_shots(settings)
    return settings


@pytest.fixture(scope="module")
def reference_poses(segmented, tmp_path_factory):
    """The poses table of an uninterrupted run, sorted by id."""
    settings = copy_root(segmented, tmp_path_factory.mktemp("uninterrupted"))
    curation.estimate_poses(settings)
    return sorted_rows(settings)


def copy_root(settings: PipelineSettings, dest: Path) -> PipelineSettings:
    shutil.copytree(settings.root / "tables", dest / "tables")
    return PipelineSettings(data_root=str(dest), raw_videos=settings.raw_videos, ray_address=settings.ray_address).validated()


def sorted_rows(settings: PipelineSettings) -> list[dict]:
    rows = tables.read(settings.table_uri("poses")).to_pylist()
    return sorted(rows, key=lambda r: r["id"])


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "duplicate pose rows"
    assert ids == [r["id"] for r in want], "missing or extra pose rows"
    for a, b in zip(got, want):
        for key in ("video_id", "frame", "num_people", "backend"):
            assert a[key] == b[key], (a["id"], key)
        for key in ("pose", "transl", "joint_uncertainty"):
            np.testing.assert_array_equal(np.asarray(a[key], np.float32), np.asarray(b[key], np.float32), err_msg=f"{a['id']} {key}")


def test_pose_stage_killed_after_its_first_commit_reruns_to_the_uninterrupted_table(segmented, reference_poses, tmp_path):
    settings = copy_root(segmented, tmp_path / "killed")
    videos = tables.count(settings.table_uri("raw_videos"))
    assert videos >= 2
    # A real SIGKILL of the stage's process right after its first commit (one video per commit here).
    proc = run_python(f"""
        import os, signal
        from pipeline.curation import stages as curation
        from pipeline.core import tables
        from pipeline.core.config import PipelineSettings

        curation.ROWS_PER_COMMIT = 1  # commit after every video
        upsert = tables.upsert
        def upsert_then_die(uri, rows, **kw):
            version = upsert(uri, rows, **kw)
            if uri.endswith("poses.lance"):
                os.kill(os.getpid(), signal.SIGKILL)
            return version
        tables.upsert = upsert_then_die
        curation.estimate_poses(PipelineSettings(data_root={str(settings.root)!r}, raw_videos={settings.raw_videos!r},
                                                 ray_address={settings.ray_address!r}))
    """)
    assert killed(proc), proc.stderr[-3000:]
    partial = tables.read(settings.table_uri("poses"), columns=["video_id"])
    assert len(set(partial["video_id"].to_pylist())) == 1  # exactly the first video's commit survived

    rerun = curation.estimate_poses(settings)
    assert rerun.processed == videos - 1  # only what the killed run had not committed
    assert_same_rows(sorted_rows(settings), reference_poses)


KILLER = "mtvcraft_kill_once"


class ActorKillingPoseTask(curation.PoseTask):
    """The pose task, except that the first actor to reach an item SIGKILLs its own process mid-item
    (once per marker file: the restarted actor's retry goes through)."""

    def __init__(self, backend: str, weights: str, **options):
        super().__init__(backend, weights, **options)
        self.marker = str(Path(tempfile.gettempdir()) / f"{KILLER}_{id(self)}_{np.random.randint(1 << 30)}")

    def __call__(self, item: dict):
        import os

        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().__call__(item)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def test_ray_actor_killed_mid_item_is_restarted_and_the_stage_completes(segmented, reference_poses, tmp_path, monkeypatch):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module
    settings = copy_root(segmented, tmp_path / "actor_killed")
    made = []

    def make(backend, weights, **options):
        made.append(ActorKillingPoseTask(backend, weights, **options))
        return made[-1]

    monkeypatch.setattr(curation, "PoseTask", make)
    try:
        result = curation.estimate_poses(settings)
        marker = Path(made[0].marker)
        assert marker.is_file(), "no actor was killed"
        assert result.rejected == 0  # the killed item was retried on a restarted actor, not rejected
        assert_same_rows(sorted_rows(settings), reference_poses)
    finally:
        for task in made:
            Path(task.marker).unlink(missing_ok=True)


# ============================================================================ training

TRAIN = """
    import numpy as np, torch
    from pipeline.motion.windows import WindowConfig
    from pipeline.synthetic.motions import make_motion
    from pipeline.tokenizer.config import TokenizerTrainConfig
    from pipeline.tokenizer.loop import train_tokenizer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    clips = [make_motion(kind, 60, 30.0, rng).joints() for kind in ("wave", "turn")]
    config = TokenizerTrainConfig(model="tiny", steps_lr1=6, steps_lr2=2, lr1=3e-3, lr2=3e-4, batch_size=2, backend="local",
                                  log_every=1, checkpoint_every=2, keep_checkpoints=5, seed=3,
                                  windows=WindowConfig(lengths=(33,), strides=(1,)))
"""


def train_in_subprocess(out: Path, kill_when_writing: str = "") -> subprocess.CompletedProcess:
    """Train the tiny 4DMoT into ``out``; with ``kill_when_writing``, SIGKILL the process as it is about to
    rename that checkpoint file into place (its bytes written to ``<name>.tmp``, not yet published)."""
    hook = ""
    if kill_when_writing:
        hook = f"""
    import os, signal
    import pipeline.core.checkpoints as ck
    replace = ck.os.replace
    class _Os:
        def __getattr__(self, name):
            return getattr(os, name)
        @staticmethod
        def replace(src, dst):
            if str(dst).endswith({kill_when_writing!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst)
    ck.os = _Os()
"""
    return run_python(TRAIN + hook + f"""
    train_tokenizer(clips, None, config, {str(out)!r}, log=lambda _: None, heldout=clips)
""")


@pytest.fixture(scope="module")
def uninterrupted_training(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_straight")
    proc = train_in_subprocess(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_training_killed_while_writing_a_checkpoint_resumes_to_the_uninterrupted_weights(uninterrupted_training, tmp_path):
    out = tmp_path / "train_killed"
    proc = train_in_subprocess(out, kill_when_writing="step_00000006.safetensors")
    assert killed(proc), proc.stderr[-3000:]
    ckpt_dir = out / "checkpoints"
    assert (ckpt_dir / "step_00000006.safetensors.tmp").is_file()  # the torn write is there ...
    assert latest_checkpoint(ckpt_dir).name == "step_00000004.safetensors"  # ... and ignored

    resumed = train_in_subprocess(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_checkpoint(latest_checkpoint(uninterrupted_training / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(ckpt_dir))
    assert a.step == b.step == 8
    assert a.model_state.keys() == b.model_state.keys()
    for name in a.model_state:
        torch.testing.assert_close(b.model_state[name], a.model_state[name], rtol=0, atol=1e-6, msg=name)
    assert a.extra["loss_curve"] == b.extra["loss_curve"]


def test_corrupted_checkpoint_is_refused_naming_the_file(uninterrupted_training, tmp_path):
    source = uninterrupted_training / "checkpoints"
    ckpt_dir = tmp_path / "run" / "checkpoints"
    shutil.copytree(source, ckpt_dir)
    latest = latest_checkpoint(ckpt_dir)
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    latest.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=rf"{re.escape(str(latest))} is corrupted: its SHA-256 is"):
        load_checkpoint(latest)
    # Resuming training refuses it too, instead of silently starting over or loading garbage.
    proc = run_python(TRAIN + f"""
    train_tokenizer(clips, None, config, {str(tmp_path / 'run')!r}, log=lambda _: None, heldout=clips)
""")
    assert proc.returncode == 1 and "CorruptCheckpointError" in proc.stderr and latest.name in proc.stderr
    assert len(list_checkpoints(ckpt_dir)) == len(list_checkpoints(source))  # nothing overwritten


# ============================================================================ configuration

@pytest.mark.parametrize("changes, setting", [
    ({"min_blur": -1.0}, "min_blur"),
    ({"min_flow": -0.5}, "min_flow"),
    ({"max_text_ratio": -0.1}, "max_text_ratio"),
    ({"uncertainty_drop": 1.5}, "uncertainty_drop"),
    ({"shot_detector": "autoshot"}, "shot_detector"),
    ({"pose_backend": "openpose"}, "pose_backend"),
    ({"train_backend": "spark"}, "train_backend"),
    ({"tokenizer_model": "huge"}, "tokenizer_model"),
    ({"tokenizer_lr": 0.0}, "tokenizer_lr"),
    ({"min_clip_frames": 1}, "min_clip_frames"),
])
def test_bad_settings_are_rejected_at_load_naming_the_setting(changes, setting):
    with pytest.raises(ConfigError, match=rf"^{setting}\b"):
        PipelineSettings(**changes).validated()
    from assets.resources import MTVCraftSettings

    with pytest.raises(ConfigError, match=rf"^{setting}\b"):
        MTVCraftSettings(**changes).settings()  # the Dagster resource checks the same way


def test_bad_environment_values_are_rejected_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MTVCRAFT_RAW_VIDEOS", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="MTVCRAFT_RAW_VIDEOS"):
        PipelineSettings.from_env()
    monkeypatch.delenv("MTVCRAFT_RAW_VIDEOS")
    monkeypatch.setenv("MTVCRAFT_MOTION_VIDEO_VERSION", "-2")
    with pytest.raises(ConfigError, match="MTVCRAFT_MOTION_VIDEO_VERSION"):
        PipelineSettings.from_env()


def test_a_non_integer_version_variable_is_rejected_naming_it(monkeypatch):
    monkeypatch.setenv("MTVCRAFT_MOTION_VIDEO_VERSION", "latest")
    with pytest.raises(ConfigError, match="MTVCRAFT_MOTION_VIDEO_VERSION"):
        PipelineSettings.from_env()


def test_a_bad_resource_value_fails_the_dagster_step_naming_the_setting(tmp_path):
    from dagster import materialize

    from assets import curation as curation_assets
    from assets.resources import MTVCraftSettings

    resource = MTVCraftSettings(data_root=str(tmp_path), shot_detector="autoshot")
    result = materialize([curation_assets.raw_videos], resources={"mtvcraft": resource}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "shot_detector = 'autoshot'" in str(failure.step_failure_data.error.to_string())


# ============================================================================ the webserver's address

def test_the_webserver_binds_loopback_by_default():
    make = require_executable("make", "make", "apt-get install -y make")
    dry_run = subprocess.run([make, "-n", "ui"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60).stdout
    command = next(line for line in dry_run.splitlines() if " dev " in line and "dagster" in line)
    assert re.search(r"(-h|--host) 127\.0\.0\.1\b", command), command
    readme = (REPO_ROOT / "README.md").read_text()
    documented = [line for line in readme.splitlines() if re.search(r"dagster(-webserver)? dev\b|dagster-webserver\b", line)]
    assert documented, "README shows no command that starts the UI"
    for line in documented:
        assert "0.0.0.0" not in line and re.search(r"(-h|--host) 127\.0\.0\.1\b", line), line


# ============================================================================ the skip-or-fail helper

def test_a_missing_package_skips_here_and_fails_under_require_all(monkeypatch):
    from conftest import REQUIRE_ALL_ENV, missing, require_module

    monkeypatch.delenv(REQUIRE_ALL_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_pkg"):
        require_module("no_such_module_xyz", "no_such_pkg", "pip install no_such_pkg")
    monkeypatch.setenv(REQUIRE_ALL_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"no_such_pkg.*{REQUIRE_ALL_ENV}=1"):
        missing("no_such_pkg", "pip install no_such_pkg")
    assert require_module("json", "json", "-").dumps([1]) == "[1]"  # present: imported, nothing raised
