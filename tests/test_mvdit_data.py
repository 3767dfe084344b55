"""Training data stays lazy (`pipeline.mvdit.data`): the trainer gets clip references and decodes only the windows
its steps draw; the driver's memory does not grow with the table."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from media import write_video
from tiny_models import tiny_tokenizer

from pipeline.core.video_io import read_frames
from pipeline.mvdit.data import ClipCache, Sample, as_samples, worker_shard

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (30, 1, 128, 160, 3), dtype=np.uint8), 10, axis=1).reshape(300, 128, 160, 3)
    return write_video(tmp_path_factory.mktemp("video") / "long.mp4", frames)


def test_a_reference_decodes_the_same_frames_once_and_the_cache_is_bounded(video):
    sample = as_samples([((str(video), 40, 140), np.zeros((100, 24, 3)))])[0]
    assert isinstance(sample, Sample) and sample.video == (str(video), 40, 140)
    cache = ClipCache(max_bytes=int(2.5 * 100 * 128 * 160 * 3))  # room for two clips of 100 frames
    truth = read_frames(video, 40, 140)
    clip = cache.clip(str(video), 40, 140)
    assert np.array_equal(clip, truth) and cache.clip(str(video), 40, 140) is clip  # decoded once
    cache.clip(str(video), 0, 100)
    cache.clip(str(video), 100, 200)  # a third clip evicts the least recently used one
    assert list(cache.clips) == [(str(video), 0, 100), (str(video), 100, 200)] and cache.nbytes <= cache.max_bytes
    assert [s.caption for s in worker_shard(as_samples([((str(video), i, i + 50), np.zeros((50, 24, 3)), str(i))
                                                        for i in range(5)]), 1, 2)] == ["1", "3"]


MEASURE = """
import json, sys, numpy as np, torch
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.train import train_mvdit

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

torch.set_num_threads(1)
video, tokenizer, out = sys.argv[1:4]
rng = np.random.default_rng(0)
refs = [((video, int(s), int(s) + 100), rng.normal(0, 0.2, (100, 24, 3)).astype(np.float32))
        for s in rng.integers(0, 200, 200)]
cfg = MVDiTTrainConfig.tiny(steps=1, checkpoint_every=1, log_every=1, buckets=((48, 64),))
train_mvdit(refs[:2], tokenizer, None, cfg, out + "/warm", log=lambda s: None)  # imports, allocator: not the table
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
train_mvdit(refs, tokenizer, None, cfg, out + "/run", log=lambda s: None)
print(json.dumps({"growth": status("VmHWM:") - before, "all_decoded": 200 * 100 * 128 * 160 * 3}))
"""


def test_200_clip_references_one_step_driver_memory_stays_flat(video, tmp_path):
    """Decoding the 200 referenced clips would take 1.2 GB; the driver (here: the local trainer too), warmed up
    by a 2-clip run (imports), grows by less than 200 MB over a training step on all 200."""
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(MEASURE), str(video), str(tokenizer),
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["all_decoded"] > 1e9 and out["growth"] < 200e6, out
