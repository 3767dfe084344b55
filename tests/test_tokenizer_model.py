"""Tests of the 4DMoT model code (models/tokenizer): quantizer, encoder/decoder shapes, layouts, representation."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path

from models.tokenizer import (
    VQVAE,
    EMAQuantizer,
    MotionNormalizer,
    TokenizerConfig,
    build_on_meta,
    count_parameters,
    decoded_frames,
    latent_frames,
    load_release_checkpoint,
    window_slices,
)

RELEASE_JSON = "release-format/4dmot.json"  # ../shared paths, read through conftest.shared_path
REAL = "real/mtvcrafter-samples"
BUCKETS = (33, 49, 81, 97, 129)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


def _tiny(**changes) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(TokenizerConfig.tiny().replace(**changes))


def _three_code_quantizer(decay: float, eps: float, reset_every: int = 0) -> EMAQuantizer:
    """Codebook C = [[0, 0], [10, 0], [0, 10]], EMA state seeded with N = 1, S = C."""
    vq = EMAQuantizer(3, 2, decay=decay, eps=eps, reset_every=reset_every).double()
    book = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    vq.codebook.copy_(book)
    vq.embed_sum.copy_(book)
    vq.cluster_size.fill_(1.0)
    vq.initialized.fill_(True)
    return vq.train()


# ---- quantizer ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "eps, expected",
    [
        # eps = 0: C = S / N with N = [1.5, 1.5, 0.5], S = [[0, 1], [15, 0], [0, 5]].
        (0.0, [[0.0, 2 / 3], [10.0, 0.0], [0.0, 10.0]]),
        # eps = 0.1: smoothed N = (N + 0.1) / (3.5 + 0.3) * 3.5 = [28/19, 28/19, 21/38].
        (0.1, [[0.0, 19 / 28], [285 / 28, 0.0], [0.0, 190 / 21]]),
    ],
)
def test_ema_update_matches_hand_computation(eps, expected):
    vq = _three_code_quantizer(decay=0.5, eps=eps)
    z = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [9.0, 1.0], [11.0, -1.0]], dtype=torch.float64)
    out = vq(z)
    assert out.ids.tolist() == [0, 0, 1, 1]
    # The output uses the codebook from before the update.
    assert torch.equal(out.quantized.detach(), torch.tensor([[0.0, 0], [0, 0], [10, 0], [10, 0]], dtype=torch.float64))
    # commitment ||E - sg[C]||^2, mean over the 8 elements: (1 + 5 + 2 + 2) / 8
    assert float(out.commit_loss) == pytest.approx(10 / 8)
    assert vq.cluster_size.tolist() == pytest.approx([1.5, 1.5, 0.5])
    assert vq.embed_sum.tolist() == [[0.0, 1.0], [15.0, 0.0], [0.0, 5.0]]
    np.testing.assert_allclose(vq.codebook.numpy(), np.array(expected), rtol=1e-12)
    assert vq.window_usage.tolist() == [2, 2, 0] and int(vq.steps) == 1
    # perplexity of the histogram [0.5, 0.5, 0] is 2
    assert float(out.perplexity) == pytest.approx(2.0, rel=1e-6)


def test_eval_mode_and_encode_do_not_touch_the_codebook():
    vq = _three_code_quantizer(decay=0.5, eps=0.0).eval()
    before = vq.codebook.clone()
    vq(torch.randn(5, 2, dtype=torch.float64))
    assert torch.equal(vq.codebook, before) and int(vq.steps) == 0
    assert int(vq.usage_counts.sum()) == 5  # analytics still count
    vq.reset_usage_counts()
    assert int(vq.usage_counts.sum()) == 0


def test_dead_code_reset_uses_the_last_window_only():
    """A code used once long ago IS reset once a whole window passes without it (the release never resets it)."""
    torch.manual_seed(0)
    vq = _three_code_quantizer(decay=0.9, eps=1e-5, reset_every=2)
    near_0_and_2 = torch.tensor([[0.5, 0.0], [0.0, 9.5]], dtype=torch.float64)
    near_0_and_1 = torch.tensor([[0.5, 0.5], [9.5, 0.5], [10.5, -0.5]], dtype=torch.float64)
    vq(near_0_and_2)  # step 1: code 2 used
    vq(near_0_and_1)  # step 2: reset check; every code was used in this window
    assert vq.window_usage.tolist() == [0, 0, 0]
    kept = vq.codebook[2].clone()
    assert kept[1] > 9  # still near (0, 10)
    vq(near_0_and_1)  # step 3
    last = torch.tensor([[0.2, 0.1], [9.8, 0.3], [10.1, -0.2]], dtype=torch.float64)
    vq(last)  # step 4: code 2 unused during steps 3-4 -> re-seeded from this batch
    assert any(torch.equal(vq.codebook[2], row) for row in last)
    assert torch.equal(vq.embed_sum[2], vq.codebook[2]) and float(vq.cluster_size[2]) == 1.0
    assert not torch.equal(vq.codebook[2], kept)


def test_codebook_is_seeded_from_data_unless_loaded():
    torch.manual_seed(0)
    vq = EMAQuantizer(4, 3, decay=1.0, reset_every=0).train()
    z = torch.randn(10, 3)
    vq(z)
    for code in vq.codebook:  # every code is one of the batch vectors (decay 1 keeps them)
        assert min(float((code - row).abs().max()) for row in z) < 1e-5
    loaded = EMAQuantizer(4, 3, decay=1.0, reset_every=0).train()
    book = torch.randn(4, 3)
    loaded.codebook.copy_(book)
    loaded(z)
    torch.testing.assert_close(loaded.codebook, book)  # a loaded codebook is not replaced


def test_straight_through_gradient_and_commitment():
    model = _tiny().train()
    x = torch.randn(2, 33, 24, 3)
    latents = model.encode_latents(x)
    latents.retain_grad()
    q = model.vq(latents, update_ema=False)
    quantized = q.quantized
    quantized.retain_grad()
    torch.testing.assert_close(quantized.detach(), model.codes_to_vectors(q.ids))
    F.l1_loss(model.decode_latents(quantized), x).backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    torch.testing.assert_close(latents.grad, quantized.grad)

    # The commitment term pulls E towards sg[C]: d/dE mean((E - C)^2) = 2 (E - C) / n.
    e = torch.randn(6, 64, requires_grad=True)
    out = model.vq(e, update_ema=False)
    out.commit_loss.backward()
    codes = model.vq.codebook[out.ids]
    torch.testing.assert_close(e.grad, 2 * (e.detach() - codes) / e.numel())


def test_quantizer_keeps_replicas_in_sync_under_torch_distributed(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        vq = EMAQuantizer(8, 4, reset_every=1).train()
        vq(torch.randn(16, 4))
        assert int(vq.steps) == 1 and bool(vq.codebook.any())
    finally:
        dist.destroy_process_group()


# ---- frames, windows, shapes -------------------------------------------------------------
@pytest.mark.parametrize("preset", ["full", "release", "tiny"])
@pytest.mark.parametrize("window", [8, None])
def test_latent_length_is_one_plus_a_quarter(preset, window):
    cfg = getattr(TokenizerConfig, preset)().replace(window=window)
    for f in BUCKETS:
        assert latent_frames(cfg, f) == 1 + (f - 1) // 4
        assert decoded_frames(cfg, latent_frames(cfg, f)) == f
    if preset == "release" and window == 8:
        assert [latent_frames(cfg, f) for f in BUCKETS] == [9, 13, 21, 25, 33]


def test_window_slices_first_takes_the_remainder():
    assert window_slices(49, 8) == [slice(0, 9)] + [slice(s, s + 8) for s in range(9, 49, 8)]
    assert window_slices(13, 2) == [slice(0, 3)] + [slice(s, s + 2) for s in range(3, 13, 2)]
    assert window_slices(5, 8) == [slice(0, 5)]
    assert window_slices(49, None) == [slice(0, 49)]


@pytest.mark.parametrize("window", [8, None])
def test_tiny_model_shapes_for_every_bucket(window):
    model = _tiny(window=window).eval()
    for f in BUCKETS:
        x = torch.randn(1, f, 24, 3)
        with torch.no_grad():
            recon, losses, ids = model(x)
        t = 1 + (f - 1) // 4
        assert recon.shape == x.shape
        assert ids.shape == (1, t, 24)
        assert model.decode_ids(ids).shape == x.shape
        assert model.motion_tokens(x).shape == (1, t * 24, 64)
        assert set(losses) == {"recon", "commit", "loss", "perplexity"}


def test_windows_are_encoded_independently():
    model = _tiny().eval()
    x = torch.randn(1, 49, 24, 3)
    y = x.clone()
    y[:, 20:] += 3.0  # change frames of later windows only
    with torch.no_grad():
        a, b = model.encode_latents(x), model.encode_latents(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])  # windows [0:9] and [9:17] -> latents 0..4
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_bad_inputs_are_rejected_with_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="frames cannot be reconstructed"):
        model(torch.randn(1, 50, 24, 3))
    with pytest.raises(ValueError, match=r"\(batch, frames, 24, 3\)"):
        model(torch.randn(1, 33, 22, 3))
    with pytest.raises(ValueError, match="not divisible by norm_groups"):
        TokenizerConfig.tiny().replace(norm_groups=32)
    with pytest.raises(ValueError, match="one per stage"):
        TokenizerConfig.full().replace(frame_down=(2, 2))
    with pytest.raises(ValueError, match="quantize_axes"):
        TokenizerConfig.full().replace(quantize_axes="2d")
    with pytest.raises(ValueError, match="code ids must lie"):
        model.codes_to_vectors(torch.tensor([256]))


def test_config_dict_round_trip():
    for cfg in (TokenizerConfig.full(), TokenizerConfig.release(), TokenizerConfig.tiny()):
        data = json.loads(json.dumps(cfg.to_dict()))
        assert TokenizerConfig.from_dict(data) == cfg


# ---- sizes and the release layout -------------------------------------------------------------
def test_parameter_counts():
    layout = json.loads(shared_path(RELEASE_JSON).read_text())
    full = count_parameters(build_on_meta(TokenizerConfig.full()))
    release_model = build_on_meta(TokenizerConfig.release())
    release = count_parameters(release_model)
    tiny = count_parameters(build_on_meta(TokenizerConfig.tiny()))
    print(f"4DMoT trainable parameters: full {full:,}  release {release:,}  tiny {tiny:,}  (paper: 48M)")
    assert full == 48_487_043  # explained in TokenizerConfig.full's docstring
    assert abs(full - 48e6) / 48e6 < 0.10
    assert release == layout["counts"]["trainable_parameters"] == 48_323_075
    for name, n in layout["counts"]["per_submodule_parameters"].items():
        assert count_parameters(release_model.get_submodule(name)) == n, name
    assert release_model.vq.codebook.numel() == layout["counts"]["buffer_elements"]  # a buffer, not counted


def test_release_layout_loads_a_zero_state_dict_strictly():
    layout = json.loads(shared_path(RELEASE_JSON).read_text())
    model = build_on_meta(TokenizerConfig.release())
    sd = model.state_dict()
    assert list(sd) == [e["name"] for e in layout["entries"]]  # same names, same order
    assert [list(v.shape) for v in sd.values()] == [e["shape"] for e in layout["entries"]]
    zeros = {e["name"]: torch.zeros(e["shape"]) for e in layout["entries"]}
    model.load_state_dict(zeros, strict=True, assign=True)
    assert model.encoder.conv_out.weight.device.type == "cpu"
    assert float(model.vq.codebook.abs().sum()) == 0.0
    del zeros["vq.codebook"]
    with pytest.raises(RuntimeError, match="vq.codebook"):
        build_on_meta(TokenizerConfig.release()).load_state_dict(zeros, strict=True, assign=True)
    # The paper layout keeps its EMA state in the checkpoint.
    full_keys = set(build_on_meta(TokenizerConfig.full()).state_dict())
    assert {"vq.codebook", "vq.cluster_size", "vq.embed_sum", "vq.steps"} <= full_keys


def test_release_loader_reads_the_deepspeed_file_format(tmp_path):
    cfg = TokenizerConfig.tiny().replace(persistent_ema_state=False)
    model = _tiny(persistent_ema_state=False)
    model.vq.codebook.normal_()
    folder = tmp_path / "snapshot" / "4DMoT"
    folder.mkdir(parents=True)
    torch.save({"module": model.state_dict(), "dp_world_size": 8}, folder / "mp_rank_00_model_states.pt")
    loaded = load_release_checkpoint(tmp_path / "snapshot", config=cfg)
    assert not loaded.training
    x = torch.randn(1, 33, 24, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.motion_tokens(x), model.eval().motion_tokens(x))
    with pytest.raises(FileNotFoundError, match="mp_rank_00_model_states.pt"):
        load_release_checkpoint(tmp_path / "nowhere")
    torch.save({"state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="'module'"):
        load_release_checkpoint(tmp_path / "bad.pt", config=cfg)


# ---- representation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stat_shape", [(3,), (24, 3)])
def test_representation_round_trip(stat_shape):
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 500, stat_shape)
    std = rng.uniform(100, 600, stat_shape)
    joints = torch.tensor(rng.normal(0, 800, (2, 33, 24, 3)) + 2000.0)
    norm = MotionNormalizer(mean, std, differential=True)
    rep = norm(joints)
    ref = (joints.numpy() - mean) / std  # independent numpy reference
    np.testing.assert_allclose(rep.numpy(), ref - ref[:, :1], rtol=1e-12, atol=1e-12)
    assert float(rep[:, 0].abs().max()) == 0.0  # first frame all zeros
    restored = norm.inverse(rep, first_frame=joints[:, 0])
    assert float((restored - joints).abs().max()) < 1e-6
    # float32 round trip, relative to the millimetre magnitudes
    j32 = joints.float()
    torch.testing.assert_close(norm.inverse(norm(j32), j32[:, 0]), j32, rtol=1e-6, atol=1e-3)
    with pytest.raises(ValueError, match="first_frame"):
        norm.inverse(rep)


def test_representation_switches_and_errors():
    joints = torch.randn(33, 24, 3) * 100 + 1000
    absolute = MotionNormalizer(np.zeros(3), np.full(3, 10.0), differential=False)
    rep = absolute(joints)
    assert float(rep[0].abs().min()) > 0  # frame 0 keeps its absolute position
    torch.testing.assert_close(absolute.inverse(rep), joints)
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(24, 3\)"):
        MotionNormalizer(np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="strictly positive"):
        MotionNormalizer(np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="joints"):
        absolute(torch.randn(33, 17, 3))


# ---- ablation switches -------------------------------------------------------------------------------
def test_without_quantize_is_a_plain_autoencoder():
    model = _tiny(quantize=False).train()
    x = torch.randn(2, 33, 24, 3)
    recon, losses, ids = model(x)
    assert ids is None and "commit" not in losses and model.vq is None
    torch.testing.assert_close(losses["loss"], losses["recon"])
    assert not any(k.startswith("vq.") for k in model.state_dict())
    assert model.motion_tokens(x).shape == (2, 9 * 24, 64)  # continuous latents
    with pytest.raises(RuntimeError, match="quantize=False"):
        model.encode(x)


def test_3d_quantization_ignores_depth():
    model = _tiny(quantize_axes="3d").eval()
    assert model.encoder.conv_in.weight.shape[1] == 2 and model.decoder.conv_out.weight.shape[0] == 2
    x = torch.randn(1, 33, 24, 3)
    y = x.clone()
    y[..., 2] = torch.randn(1, 33, 24) * 5
    with torch.no_grad():
        rx, lx, ix = model(x)
        ry, ly, iy = model(y)
    assert torch.equal(ix, iy) and torch.equal(rx, ry)
    assert float(rx[..., 2].abs().max()) == 0.0
    torch.testing.assert_close(lx["recon"], ly["recon"])
    # The default 4D variant does see depth.
    four = _tiny().eval()
    with torch.no_grad():
        assert not torch.allclose(four.encode_latents(x), four.encode_latents(y))


def test_differential_switch_reaches_the_representation():
    joints = torch.randn(1, 33, 24, 3) + 5
    for cfg, zero_first in ((TokenizerConfig.full(), True), (TokenizerConfig.release(), False)):
        rep = MotionNormalizer(np.zeros(3), np.ones(3), differential=cfg.differential)(joints)
        assert (float(rep[:, 0].abs().max()) == 0.0) is zero_first


# ---- real data, training --------------------------------------------------------------------------------
def test_real_nlf_joints_tokenize_in_release_layout():
    real = shared_path(REAL)
    clip = np.load(real / "nlf_joints_mm.npz")["00001"][:49]
    norm = MotionNormalizer.from_files(real / "release_mean_mm.npy", real / "release_std_mm.npy", differential=False)
    x = norm(torch.from_numpy(clip))[None]
    assert x.dtype == torch.float32 and float(x.abs().max()) < 20  # release statistics fit NLF joints in mm
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.release()).eval()
    model.vq.codebook.normal_()
    with torch.no_grad():
        ids = model.encode(x)
        assert ids.shape == (1, 13, 24) and ids.dtype == torch.int64
        assert int(ids.min()) >= 0 and int(ids.max()) < 8192
        assert model.codes_to_vectors(ids).shape == (1, 13, 24, 3072)
        tokens = model.motion_tokens(x)
        assert tokens.shape == (1, 312, 3072)
        torch.testing.assert_close(tokens[0, 5 * 24 + 7], model.vq.codebook[ids[0, 5, 7]])  # frame-major order
        recon = model.decode_ids(ids)
    assert recon.shape == (1, 49, 24, 3) and torch.isfinite(recon).all()
    assert norm.inverse(recon[0]).shape == (49, 24, 3)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.tiny()).train()
    t = torch.linspace(0, 1, 33)
    x = torch.randn(2, 1, 24, 3) * 0.5 + torch.sin(6 * t)[None, :, None, None] * torch.randn(2, 1, 24, 3)
    x = x - x[:, :1]  # differential: frame 0 is zero
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(80):
        _, losses, _ = model(x)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(float(losses["recon"].detach()))
    print(f"tiny overfit: recon L1 {history[0]:.3f} -> {history[-1]:.3f}")
    assert history[-1] < history[0] / 4
    assert int((model.vq.usage_counts > 0).sum()) > 10  # the codebook did not collapse to one code


def test_models_do_not_import_orchestration_layers():
    root = Path(__file__).resolve().parents[1] / "models" / "tokenizer"
    banned = {"dagster", "ray", "lance"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & banned, f"{path.name} imports {names}"
