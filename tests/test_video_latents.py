"""The optional ``video_latents`` table (`pipeline.mvdit.latent_table`): fixed windows encoded once, read back
within bf16 of the latent map, re-runs add nothing, a corrupt clip is a rejection, and MV-DiT training reads the
table without running the latent map, training as it would on the same windows encoded in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import write_video
from tiny_models import tiny_tokenizer

from pipeline.core import tables
from pipeline.core.video_io import read_frames
from pipeline.mvdit import latent_table
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.latent_table import (
    FIRST_FRAME,
    ZERO_PADDED,
    LatentWindows,
    Window,
    encode_clips,
    from_bytes,
    latent_key,
    plan_windows,
)
from pipeline.mvdit.latents import PoolLatentMap
from pipeline.mvdit.train import train_mvdit
from pipeline.mvdit.windows import reference_video, resize_crop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUCKETS = ((32, 32),)
SPEC = PoolLatentMap(latent_channels=4).spec()


def moving_square(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.full((frames, height, width, 3), rng.integers(20, 80), np.uint8)
    path = np.cumsum(rng.normal(0, 1.5, (frames, 2)), axis=0)
    for t in range(frames):
        cx = int(np.clip(width / 2 + path[t, 0], 8, width - 8))
        cy = int(np.clip(height / 2 + path[t, 1], 8, height - 8))
        video[t, cy - 6 : cy + 6, cx - 6 : cx + 6] = rng.integers(100, 255, 3)
    return video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three good clips in two videos (one not square: it is resized and centre-cropped to 32 x 32) and one clip
    whose frame range lies past its video's end (decoding fails)."""
    root = tmp_path_factory.mktemp("videos")
    a = write_video(root / "a.mp4", moving_square(110, 32, 48, 0))
    b = write_video(root / "b.mp4", moving_square(70, 32, 32, 1))
    rng = np.random.default_rng(2)
    rows = [("a:0-80", a, 0, 80, 48, 32), ("a:30-110", a, 30, 110, 48, 32), ("b:0-70", b, 0, 70, 32, 32),
            ("b:40-120", b, 40, 120, 32, 32)]
    return [{"id": i, "uri": str(u), "start_frame": s, "end_frame": e, "width": w, "height": h,
             "joints": rng.normal(0, 0.2, (e - s, 24, 3)).astype(np.float32)} for i, u, s, e, w, h in rows]


@pytest.fixture(scope="module")
def table(clips, tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("tables") / "video_latents.lance")
    summary, bad = encode_clips(uri, clips, SPEC, FIRST_FRAME, (33,), (1, 2), BUCKETS, log=lambda s: None)
    return uri, summary, bad


def test_plan_tiles_each_length_and_stride_from_frame_zero():
    windows = plan_windows(100, (33, 49), (1, 2))
    assert windows == [Window(0, 33, 1), Window(33, 33, 1), Window(66, 33, 1), Window(0, 33, 2),
                       Window(0, 49, 1), Window(49, 49, 1), Window(0, 49, 2)]
    assert all(w.first + w.span <= 100 for w in windows)
    assert plan_windows(32, (33,), (1, 2)) == []


def test_rows_round_trip_the_latent_map_within_bf16(clips, table):
    uri, summary, bad = table
    rows = tables.read(uri).to_pylist()
    # 80-frame clips: 2 windows of 33 at stride 1 and 1 of 65 frames at stride 2; 70 frames: 2 + 1.
    assert summary["windows_added"] == len(rows) == 9 and summary["clips_encoded"] == 3
    assert {r["clip_id"] for r in rows} == {"a:0-80", "a:30-110", "b:0-70"}
    lm = PoolLatentMap(latent_channels=4)
    for row in rows:
        w = Window(row["first"], row["length"], row["stride"])
        clip = read_frames(row["uri"], row["clip_start"], row["clip_end"])
        frames = resize_crop(clip[w.first : w.first + w.span : w.stride], (32, 32), None)
        video = torch.from_numpy(np.ascontiguousarray(frames))[None]
        expected, expected_ref = lm.encode(video)[0], lm.encode(reference_video(video, False))[0]
        mean, ref = from_bytes(row["mean"], row["shape"]), from_bytes(row["ref_mean"], row["ref_shape"])
        assert mean.shape == expected.shape == (9, 4, 4, 4) and ref.shape == (1, 4, 4, 4)
        assert (mean - expected).abs().max() <= 2 ** -8 * expected.abs().max() + 1e-6  # bf16: 8 mantissa bits
        assert (ref - expected_ref).abs().max() <= 2 ** -8 * expected_ref.abs().max() + 1e-6
        assert row["logvar"] is None and row["ref_logvar"] is None  # the pool map has no posterior variance
        assert np.array_equal(np.frombuffer(row["first_frame"], np.uint8).reshape(32, 32, 3), frames[0])
        assert row["latent_key"] == latent_key(SPEC) and row["reference"] == FIRST_FRAME


def test_a_corrupt_clip_is_a_rejection_and_a_rerun_adds_nothing(clips, table):
    uri, _, bad = table
    assert [(r.item_id, r.reason) for r in bad] == [("b:40-120", "decode_failed")]
    assert "ends at frame" in bad[0].detail
    version, count = tables.version(uri), tables.count(uri)
    summary, again = encode_clips(uri, clips, SPEC, FIRST_FRAME, (33,), (1, 2), BUCKETS, log=lambda s: None)
    assert summary["windows_added"] == 0 and summary["windows_skipped"] == count == 9
    assert tables.version(uri) == version and [r.item_id for r in again] == ["b:40-120"]
    # Another latent map (or reference kind) is another set of rows beside these, never instead of them.
    other = PoolLatentMap(latent_channels=4, seed=1).spec()
    summary, _ = encode_clips(uri, clips[:1], other, ZERO_PADDED, (33,), (1,), BUCKETS, log=lambda s: None)
    assert summary["windows_added"] == 2 and tables.count(uri) == count + 2
    assert tables.count(uri, f"latent_key = '{latent_key(SPEC)}'") == count
    # The 18B's reference (Eq. 9): ZeroPad(x_0) has the window's length, so as many latent frames as the window.
    padded = tables.read(uri, filter="reference = 'zero_padded'").to_pylist()
    assert all(r["ref_shape"] == r["shape"] == [9, 4, 4, 4] for r in padded)


def samples_of(clips):
    return [((c["uri"], c["start_frame"], c["end_frame"]), c["joints"]) for c in clips]


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_training_reads_latents_and_never_runs_the_latent_map(clips, table, tokenizer_ckpt, tmp_path, monkeypatch):
    uri, _, _ = table
    calls = {"encode": 0, "posterior": 0}
    for name in calls:
        original = getattr(PoolLatentMap, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(PoolLatentMap, name, counted)
    cfg = MVDiTTrainConfig.tiny(steps=3, log_every=1, buckets=BUCKETS, lengths=(33,), strides=(1, 2),
                                video_latents=uri)
    logs = []
    # The corrupt clip is passed too: it has no windows, so it is left out (and said so), not a crash.
    result = train_mvdit(samples_of(clips), tokenizer_ckpt, None, cfg, tmp_path / "run", log=logs.append)
    assert calls == {"encode": 0, "posterior": 0}
    assert len(result.loss_curve) == 3 and all(np.isfinite(p["loss"]) for p in result.loss_curve)
    assert any("no random crop and no colour jitter" in line and "1 clips have no encoded windows" in line
               for line in logs)
    # Without the table the same config runs the latent map every step (twice: z_0 and z_ref).
    plain = MVDiTTrainConfig.tiny(steps=2, log_every=1, buckets=BUCKETS, lengths=(33,), strides=(1, 2))
    train_mvdit(samples_of(clips[:3]), tokenizer_ckpt, None, plain, tmp_path / "plain", log=lambda s: None)
    assert calls["encode"] == 4


def test_table_trains_like_the_latent_map_on_the_same_windows(clips, table, tokenizer_ckpt, tmp_path, monkeypatch):
    """The same seed, the same windows: latents read from the table (bf16) or encoded in float32 by the latent map
    when the step reads them give the same losses within bf16's rounding."""
    uri, _, _ = table
    cfg = MVDiTTrainConfig.tiny(steps=4, log_every=1, buckets=BUCKETS, lengths=(33,), strides=(1, 2),
                                video_latents=uri)
    from_table = train_mvdit(samples_of(clips), tokenizer_ckpt, None, cfg, tmp_path / "table", log=lambda s: None)

    meta = tables.read(uri, columns=["uri", "clip_start", "clip_end", "first", "length", "stride"]).to_pylist()
    lm = PoolLatentMap(latent_channels=4)

    def encode_instead(self, positions):
        windows = []
        for p in positions:
            row = meta[p]
            w = Window(row["first"], row["length"], row["stride"])
            clip = read_frames(row["uri"], row["clip_start"], row["clip_end"])
            windows.append(resize_crop(clip[w.first : w.first + w.span : w.stride], (32, 32), None))
        video = torch.from_numpy(np.stack(windows))
        return {"mean": lm.encode(video), "logvar": None, "ref_mean": lm.encode(video[:, :1]), "ref_logvar": None,
                "first_frame": video[:, 0].numpy()}

    monkeypatch.setattr(LatentWindows, "read", encode_instead)
    encoded = train_mvdit(samples_of(clips), tokenizer_ckpt, None, cfg, tmp_path / "encoded", log=lambda s: None)
    a = np.array([p["loss"] for p in from_table.loss_curve])
    b = np.array([p["loss"] for p in encoded.loss_curve])
    assert len(a) == len(b) == 4 and not np.array_equal(a, b)  # bf16 storage is not float32...
    np.testing.assert_allclose(a, b, rtol=2e-2)  # ...but trains the same


def test_vae_posterior_is_the_scaled_distribution_encode_samples_from():
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan

    from pipeline.mvdit.latents import VAELatentMap

    torch.manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, (1, 9, 16, 16, 3), dtype=np.uint8)
    cog = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                                 norm_num_groups=4, scaling_factor=0.7)
    wan = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[2.0, 0.5, 1.0, 4.0])
    x = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
    for vae in (cog, wan):
        lm = VAELatentMap(vae)
        mean, logvar = lm.posterior(frames)
        assert torch.allclose(mean, lm.encode(frames, mode=True), atol=1e-6)
        dist = vae.encode(x).latent_dist
        if vae is cog:
            std = dist.std * 0.7
        else:
            std = dist.std / torch.tensor([2.0, 0.5, 1.0, 4.0]).view(1, 4, 1, 1, 1)
        assert torch.allclose(torch.exp(0.5 * logvar), std.permute(0, 2, 1, 3, 4), rtol=1e-4)
        # Samples drawn from the stored pair spread like encode's own samples.
        draws = torch.stack([latent_table.sample_posterior(mean, logvar, torch.Generator().manual_seed(i))
                             for i in range(200)])
        assert torch.allclose(draws.std(0).mean(), std.mean(), rtol=0.1)


def test_stage_is_off_by_default_and_when_on_encodes_records_rejects_and_points_mv_dit_at_the_table(clips, tmp_path,
                                                                                                  monkeypatch):
    import hashlib
    import json

    from pipeline.core.config import ConfigError, PipelineSettings
    from pipeline.mvdit.latents_stage import build_video_latents
    from pipeline.mvdit.stage import mvdit_config, mvdit_dir

    monkeypatch.setenv("MTVCRAFT_VIDEO_LATENTS", "maybe")
    with pytest.raises(ConfigError, match="MTVCRAFT_VIDEO_LATENTS"):
        PipelineSettings.from_env(data_root=str(tmp_path))
    monkeypatch.setenv("MTVCRAFT_VIDEO_LATENTS", "1")
    assert PipelineSettings.from_env(data_root=str(tmp_path)).video_latents is True
    off = PipelineSettings(data_root=str(tmp_path))
    result = build_video_latents(off, log=lambda s: None)
    assert result.extra == {"enabled": False} and not (tmp_path / "tables" / "video_latents.lance").exists()

    # A motion_video table of the fixture's clips (the columns the stage reads; the rest empty).
    names = tables.MOTION_VIDEO.names
    rows = [{**{n: None for n in names}, **{k: c[k] for k in ("id", "uri", "start_frame", "end_frame", "width",
                                                                "height")}} for c in clips]
    tables.upsert(off.table_uri("motion_video"), pa_table(rows))
    on = off.with_overrides(video_latents=True)
    result = build_video_latents(on, log=lambda s: None)
    # Demo bucket 48 x 64, 33 frames at stride 1: 2 windows in each of the three readable clips.
    assert (result.num_rows, result.rejected, result.extra["windows_added"]) == (6, 1, 6)
    assert result.extra["latent_map"]["kind"] == "pool" and result.extra["bytes_added"] > 0
    rejected = tables.read(on.table_uri("rejects"), filter="stage = 'video_latents'").to_pylist()
    assert [(r["item_id"], r["reason"]) for r in rejected] == [("b:40-120", "decode_failed")]
    assert mvdit_config(on).video_latents == on.table_uri("video_latents") and mvdit_config(off).video_latents == ""
    # Off, the training folder's key is the one computed before the setting existed (no video_latents in it).
    config = mvdit_config(off).to_dict()
    for name in ("backend", "num_workers", "ray_address", "run_name", "log_every", "video_latents"):
        config.pop(name)
    assert mvdit_dir(off).name.endswith(hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10])
    assert mvdit_dir(on) != mvdit_dir(off)


def pa_table(rows):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=tables.MOTION_VIDEO)


def test_mv_dit_depends_on_the_video_latents_asset():
    from dagster import AssetKey

    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert AssetKey("video_latents") in graph.get(AssetKey("mv_dit")).parent_keys
    assert AssetKey("motion_video") in graph.get(AssetKey("video_latents")).parent_keys


def test_wan_tiny_trains_on_zero_padded_references_and_the_stored_first_frames(clips, table, tokenizer_ckpt,
                                                                              tmp_path, monkeypatch):
    """The 18B's path (Eq. 9 references, CLIP image of frame 0) from the table: the image encoder gets the stored,
    centre-cropped first frames, and the latent map never runs."""
    from tiny_models import tiny_wan_encoders

    from pipeline.mvdit.wan_conditioning import WanConditioner

    uri, _, _ = table
    summary, _ = encode_clips(uri, clips, SPEC, ZERO_PADDED, (33,), (1, 2), BUCKETS, log=lambda s: None)
    assert summary["windows_added"] == 9  # beside the first-frame rows of the same latent map
    stored = {r["first_frame"] for r in tables.read(uri, columns=["first_frame"],
                                                    filter="reference = 'zero_padded'").to_pylist()}
    seen = []
    original = WanConditioner.encode_images

    def spy(self, images):
        seen.extend(np.ascontiguousarray(image).tobytes() for image in images)
        return original(self, images)

    monkeypatch.setattr(WanConditioner, "encode_images", spy)
    monkeypatch.setattr(PoolLatentMap, "encode", lambda *a, **k: pytest.fail("the latent map ran in training"))
    cfg = MVDiTTrainConfig.tiny(model="wan_tiny", wan_encoders=str(tiny_wan_encoders(tmp_path / "wan")), steps=2,
                                log_every=1, buckets=BUCKETS, lengths=(33,), strides=(1, 2), video_latents=uri)
    result = train_mvdit(samples_of(clips[:3]), tokenizer_ckpt, None, cfg, tmp_path / "run", log=lambda s: None)
    assert len(result.loss_curve) == 2 and all(np.isfinite(p["loss"]) for p in result.loss_curve)
    assert len(seen) == 2 * cfg.batch_size and set(seen) <= stored
