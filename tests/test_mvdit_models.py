"""MV-DiT-6B (CogVideoX) and MV-DiT-18B (Wan2.1-I2V) models: forward/backward, equality with the bare
backbone, Eq. 3 / Eq. 9-10 inputs, diffusers save/load, backbone start, release checkpoint loading, counts."""

import inspect
import json

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel
from safetensors.torch import save_file

from models.mvdit.cogvideox import MVDiTCogVideoX, MVDiTConfig, base_grid_crop
from models.mvdit.param_counts import build_on_meta, count_parameters, format_table, param_table
from models.mvdit.wan import (
    MVDiTWan,
    MVDiTWanConfig,
    reference_frame_mask,
    to_release_state_dict,
    wan_vision_latents,
    zero_padded_reference,
)

LAYOUTS = ("paper", "release")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def cog_inputs(model, batch=2, frames=3, size=8, seed=0):
    g, c = _gen(seed), model.config
    return {
        "hidden_states": torch.randn(batch, frames, c.out_channels, size, size, generator=g),
        "reference_latent": torch.randn(batch, c.out_channels, size, size, generator=g),
        "motion_tokens": torch.randn(batch, frames * c.num_joints, c.motion_token_dim, generator=g),
        "timestep": torch.tensor([30, 700])[:batch],
        "mean_joints": torch.randn(c.num_joints, 3, generator=g) * 0.3,
    }


def wan_inputs(model, batch=2, frames=3, size=8, seed=0):
    g, c = _gen(seed), model.config
    return {
        "hidden_states": torch.randn(batch, c.out_channels, frames, size, size, generator=g),
        "reference_latent": torch.randn(batch, c.out_channels, frames, size, size, generator=g),
        "motion_tokens": torch.randn(batch, frames * c.num_joints, c.motion_token_dim, generator=g),
        "timestep": torch.tensor([30, 700])[:batch],
        "encoder_hidden_states": torch.randn(batch, 512, c.text_dim, generator=g),
        "encoder_hidden_states_image": torch.randn(batch, 257, c.image_dim, generator=g),
        "mean_joints": torch.randn(c.num_joints, 3, generator=g) * 0.3,
    }


def tiny_cog(layout="paper", seed=0, **kw):
    torch.manual_seed(seed)
    return MVDiTConfig.tiny(layout, **kw).build()


def tiny_wan(layout="paper", seed=0, **kw):
    torch.manual_seed(seed)
    return MVDiTWanConfig.tiny(layout, **kw).build()


def stock_kwargs(model, stock_cls):
    keys = set(inspect.signature(stock_cls.__init__).parameters) - {"self"}
    return {k: v for k, v in model.config.items() if k in keys}


def live_motion(model):
    """Give the zero-initialised output projections weights, as after training."""
    for module in model.motion_modules().values():
        attn = getattr(module, "motion_attn", module)
        torch.nn.init.normal_(attn.o.weight, std=0.2)


# --- forward / backward --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiny_6b_forward_backward(layout):
    model = tiny_cog(layout, num_layers=4)
    inputs = cog_inputs(model)
    out = model(**inputs).sample
    assert out.shape == inputs["hidden_states"].shape
    out.square().mean().backward()
    assert all(p.requires_grad for p in model.parameters())  # App. A.1: 6B trains all DiT blocks
    assert model.transformer_blocks[1].ff.net[2].weight.grad.abs().sum() > 0
    assert model.transformer_blocks[0].attn0.to_out[0].weight.grad.abs().sum() > 0
    expected = [0, 2] if layout == "paper" else [0, 1, 2, 3]
    assert model.motion_block_indices == expected
    assert [i for i, b in enumerate(model.transformer_blocks) if hasattr(b, "attn0")] == expected
    has_text_proj = any("text_proj" in k for k in model.state_dict())
    assert has_text_proj == (layout == "release")  # paper: text branch removed


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiny_18b_forward_backward_trains_only_new_modules(layout):
    model = tiny_wan(layout)
    inputs = wan_inputs(model)
    out = model(**inputs).sample
    assert out.shape == inputs["hidden_states"].shape
    out.square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        ".motion_attn." in n or ".norm4." in n or n == "unconditional_motion_token" for n in trainable
    )
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    assert model.blocks[0].motion_attn.o.weight.grad.abs().sum() > 0
    assert model.motion_block_indices == ([0, 2] if layout == "paper" else [0])
    assert (model.unconditional_motion_token is None) == (layout == "release")


# --- equality with the bare backbone -------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fresh_6b_equals_bare_cogvideox_on_the_vision_path(layout):
    model = tiny_cog(layout, num_layers=3).eval()
    stock = CogVideoXTransformer3DModel(**stock_kwargs(model, CogVideoXTransformer3DModel)).eval()
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    assert all(".attn0." in k or k == "unconditional_motion_token" for k in unexpected)
    assert missing == ([] if layout == "release" else ["patch_embed.text_proj.weight", "patch_embed.text_proj.bias"])
    inputs = cog_inputs(model)
    batch, frames, _, h, w = inputs["hidden_states"].shape
    z = torch.cat([inputs["hidden_states"], inputs["reference_latent"][:, None].expand(-1, frames, -1, -1, -1)], 2)
    with torch.no_grad():
        ours = model(**inputs).sample
        bare = stock(
            z, torch.zeros(batch, 0, model.config.text_embed_dim), inputs["timestep"],
            image_rotary_emb=model.backbone_rope(frames, h // 2, w // 2, "cpu"),
        ).sample
        assert torch.equal(ours, bare)
        live_motion(model)
        assert not torch.allclose(model(**inputs).sample, bare)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fresh_18b_equals_bare_wan_on_the_vision_path(layout):
    model = tiny_wan(layout).eval()
    stock = WanTransformer3DModel(**stock_kwargs(model, WanTransformer3DModel)).eval()
    missing, unexpected = stock.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and all(".motion_attn." in k or ".norm4." in k or "unconditional" in k for k in unexpected)
    inputs = wan_inputs(model)
    with torch.no_grad():
        ours = model(**inputs).sample
        bare = stock(
            wan_vision_latents(inputs["hidden_states"], inputs["reference_latent"]), inputs["timestep"],
            inputs["encoder_hidden_states"], inputs["encoder_hidden_states_image"],
        ).sample
        assert torch.equal(ours, bare)
        live_motion(model)
        assert not torch.allclose(model(**inputs).sample, bare)


@pytest.mark.parametrize("build, make_inputs", [(tiny_cog, cog_inputs), (tiny_wan, wan_inputs)])
def test_motion_tokens_and_their_4d_positions_drive_the_output(build, make_inputs):
    model = build().eval()
    live_motion(model)
    inputs = make_inputs(model)
    with torch.no_grad():
        base = model(**inputs).sample
        other_motion = model(**{**inputs, "motion_tokens": torch.randn_like(inputs["motion_tokens"])}).sample
        other_joints = model(**{**inputs, "mean_joints": inputs["mean_joints"].flip(0)}).sample
    assert not torch.allclose(base, other_motion)
    assert not torch.allclose(base, other_joints)  # 4D RoPE of the motion keys uses the joint positions


@pytest.mark.parametrize("build, make_inputs", [(tiny_cog, cog_inputs), (tiny_wan, wan_inputs)])
def test_gradient_checkpointing_gives_the_same_gradients(build, make_inputs):
    grads = []
    for checkpointing in (False, True):
        model = build()
        live_motion(model)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(**make_inputs(model)).sample.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


# --- inputs: Eq. 3 and Eq. 9-10 ---------------------------------------------------------------------


def test_eq3_reference_forms_agree():
    model = tiny_cog().eval()
    inputs = cog_inputs(model)
    ref = inputs["reference_latent"]
    frames = inputs["hidden_states"].shape[1]
    with torch.no_grad():
        outs = [
            model(**{**inputs, "reference_latent": r}).sample
            for r in (ref, ref[:, None], ref[:, None].expand(-1, frames, -1, -1, -1))
        ]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_eq9_10_mask_and_channel_order():
    mask = reference_frame_mask(latent_frames=4, height=2, width=3)
    assert mask.shape == (4, 4, 2, 3)
    assert torch.equal(mask[:, 0], torch.ones(4, 2, 3)) and mask[:, 1:].sum() == 0
    # 6 given video frames: latent 0 <- frame 0, latent 1 <- frames 1-4, latent 2 <- frames 5-8 (only 5 given)
    mask = reference_frame_mask(latent_frames=4, height=1, width=1, known_frames=6)[:, :, 0, 0]
    assert mask.T.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]
    noisy, ref = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    z = wan_vision_latents(noisy, ref)
    assert z.shape == (2, 12, 3, 2, 2)
    assert torch.equal(z[:, :4], noisy) and torch.equal(z[:, 8:], ref)
    assert torch.equal(z[:, 4:8, 0], torch.ones(2, 4, 2, 2)) and z[:, 4:8, 1:].abs().sum() == 0
    paper = wan_vision_latents(noisy, ref, order="paper")
    assert torch.equal(paper[:, :4], ref) and torch.equal(paper[:, 8:], noisy)
    video = zero_padded_reference(torch.ones(2, 3, 4, 4), num_frames=9)
    assert video.shape == (2, 3, 9, 4, 4) and video[:, :, 0].min() == 1 and video[:, :, 1:].abs().sum() == 0


def test_cogvideox_rope_crop_matches_the_stock_pipeline_rule():
    assert base_grid_crop(30, 45, base_w=45, base_h=30) == ((0, 0), (30, 45))  # 480x720: the full base grid
    assert base_grid_crop(32, 32, base_w=45, base_h=30) == ((0, 8), (30, 38))  # 512x512: centred 30x30
    assert base_grid_crop(20, 45, base_w=45, base_h=30) == ((5, 0), (25, 45))  # wide: full width


def test_bad_inputs_raise_clear_errors():
    model = tiny_cog()
    inputs = cog_inputs(model)
    with pytest.raises(ValueError, match="motion_tokens must be"):
        model(**{**inputs, "motion_tokens": inputs["motion_tokens"][:, :-1]})
    with pytest.raises(ValueError, match="mean_joints"):
        model(**{**inputs, "mean_joints": None})
    with pytest.raises(ValueError, match="reference_latent"):
        model(**{**inputs, "reference_latent": inputs["reference_latent"][:, :, :4]})
    with pytest.raises(ValueError, match="in_channels must be 2"):
        MVDiTCogVideoX(**{**MVDiTConfig.tiny().model_kwargs(), "in_channels": 5})
    wan = tiny_wan("release")
    with pytest.raises(ValueError, match="no unconditional"):
        wan(**wan_inputs(wan), motion_mask=torch.tensor([False, True]))
    with pytest.raises(ValueError, match="encoder_hidden_states_image"):
        wan(**{**wan_inputs(wan), "encoder_hidden_states_image": None})


# --- production loading -----------------------------------------------------------------------------


def _same_model(a, b, inputs):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        assert torch.equal(a.eval()(**inputs).sample, b.eval()(**inputs).sample)


@pytest.mark.parametrize("cls, build, make_inputs", [
    (MVDiTCogVideoX, tiny_cog, cog_inputs), (MVDiTWan, tiny_wan, wan_inputs)])
@pytest.mark.parametrize("safe", [True, False])
def test_save_pretrained_from_pretrained_round_trip(tmp_path, cls, build, make_inputs, safe):
    model = build()
    live_motion(model)
    inputs = make_inputs(model)
    model.set_mean_joints(inputs.pop("mean_joints"))  # stored in config.json
    model.save_pretrained(tmp_path, safe_serialization=safe)
    weights = "diffusion_pytorch_model." + ("safetensors" if safe else "bin")
    assert (tmp_path / weights).is_file()
    loaded = cls.from_pretrained(tmp_path)
    assert type(loaded) is cls and loaded.config.motion_layout == "paper"
    _same_model(model, loaded, inputs)


def test_cogvideox_release_folder_with_the_official_config_loads(tmp_path):
    """The released config.json names another class and carries keys Transformer7B ignores."""
    model = tiny_cog("release")
    live_motion(model)
    model.save_pretrained(tmp_path, safe_serialization=False)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    for key in [k for k in config if k.startswith("motion_") or k in ("unconditional_frames", "train_backbone")]:
        del config[key]
    config.update({"_class_name": "Transformer7B", "use_learned_positional_embeddings": True, "motion_dim": 168})
    config_file.write_text(json.dumps(config))
    loaded = MVDiTCogVideoX.from_pretrained(
        tmp_path, motion_layout="release", motion_token_dim=64, unconditional_frames=4
    )
    assert loaded.config.use_learned_positional_embeddings is False
    _same_model(model, loaded, cog_inputs(model))


def test_wan_release_checkpoint_with_original_names_loads_strictly(tmp_path):
    model = tiny_wan("release")
    live_motion(model)
    state = to_release_state_dict(model.state_dict())
    assert "blocks.0.motion_attn.k.weight" in state and "head.head.weight" in state  # original Wan names
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = MVDiTWan.from_release_checkpoint(tmp_path, **MVDiTWanConfig.tiny("release").model_kwargs())
    _same_model(model, loaded, wan_inputs(model))
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.bin"):
        MVDiTWan.from_release_checkpoint(tmp_path / "missing")


def test_6b_starts_from_a_stock_cogvideox_folder(tmp_path):
    torch.manual_seed(1)
    tiny = MVDiTConfig.tiny()
    stock = CogVideoXTransformer3DModel(**{**tiny.backbone, "in_channels": 4}).eval()  # T2V: 4 latent channels
    stock.save_pretrained(tmp_path / "transformer")
    model = MVDiTCogVideoX.from_backbone(
        tmp_path, motion_token_dim=tiny.motion_token_dim, unconditional_frames=4
    ).eval()
    assert model.patch_embed.proj.weight.shape[1] == 8
    inputs = cog_inputs(model)
    batch, frames, _, h, w = inputs["hidden_states"].shape
    with torch.no_grad():
        ours = model(**inputs).sample
        bare = stock(
            inputs["hidden_states"], torch.zeros(batch, 0, tiny.backbone["text_embed_dim"]), inputs["timestep"],
            image_rotary_emb=model.backbone_rope(frames, h // 2, w // 2, "cpu"),
        ).sample
    torch.testing.assert_close(ours, bare, rtol=1e-5, atol=1e-5)  # reference channels start at zero weight


def test_6b_starts_from_a_stock_cogvideox_i2v_folder_with_its_learned_pos_embedding(tmp_path):
    """CogVideoX-5B-I2V's layout: in_channels 2 x latent, use_learned_positional_embeddings=True (a persistent
    ``patch_embed.pos_embedding`` in its state_dict). It loads; the table is dropped (RoPE only, as the release)."""
    torch.manual_seed(2)
    tiny = MVDiTConfig.tiny()
    i2v = CogVideoXTransformer3DModel(**{**tiny.backbone, "use_learned_positional_embeddings": True}).eval()
    assert "patch_embed.pos_embedding" in i2v.state_dict() and i2v.config.in_channels == 8
    i2v.save_pretrained(tmp_path / "transformer")
    for layout in ("paper", "release"):
        model = MVDiTCogVideoX.from_backbone(
            tmp_path, motion_layout=layout, motion_token_dim=tiny.motion_token_dim, unconditional_frames=4
        ).eval()
        ours = model.state_dict()
        for name, value in i2v.state_dict().items():
            if name == "patch_embed.pos_embedding" or (layout == "paper" and "text_proj" in name):
                continue
            torch.testing.assert_close(ours[name], value, rtol=0, atol=0)  # incl. the 8-channel patch embedding
    # the same weights without the learned table: the model starts as that backbone (zero motion attention)
    rope_only = CogVideoXTransformer3DModel(**tiny.backbone).eval()
    rope_only.load_state_dict({k: v for k, v in i2v.state_dict().items() if k != "patch_embed.pos_embedding"})
    inputs = cog_inputs(model)
    batch, frames, _, h, w = inputs["hidden_states"].shape
    reference = inputs["reference_latent"]
    reference = reference.unsqueeze(1) if reference.ndim == 4 else reference
    with torch.no_grad():
        bare = rope_only(
            torch.cat([inputs["hidden_states"], reference.expand_as(inputs["hidden_states"])], 2),
            torch.zeros(batch, 0, tiny.backbone["text_embed_dim"]), inputs["timestep"],
            image_rotary_emb=model.backbone_rope(frames, h // 2, w // 2, "cpu"),
        ).sample
        torch.testing.assert_close(model(**inputs).sample, bare, rtol=1e-5, atol=1e-5)


def test_18b_starts_from_a_stock_wan_folder(tmp_path):
    torch.manual_seed(1)
    tiny = MVDiTWanConfig.tiny()
    stock = WanTransformer3DModel(**tiny.backbone).eval()
    stock.save_pretrained(tmp_path)
    model = MVDiTWan.from_backbone(tmp_path, motion_token_dim=tiny.motion_token_dim, unconditional_frames=4).eval()
    inputs = wan_inputs(model)
    with torch.no_grad():
        bare = stock(
            wan_vision_latents(inputs["hidden_states"], inputs["reference_latent"]), inputs["timestep"],
            inputs["encoder_hidden_states"], inputs["encoder_hidden_states_image"],
        ).sample
        assert torch.equal(model(**inputs).sample, bare)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "motion" not in n and "norm4" not in n)


# --- full-size parameter counts (meta) ----------------------------------------------------------------------


def test_full_size_parameter_counts(capsys):
    rows = {(r.model[:10], r.layout): r for r in param_table()}
    with capsys.disabled():
        print("\n" + format_table(list(rows.values())))
    six_paper, six_release = rows["MV-DiT-6B ", "paper"], rows["MV-DiT-6B ", "release"]
    big_paper, big_release = rows["MV-DiT-18B", "paper"], rows["MV-DiT-18B", "release"]
    assert six_release.total == 7_157_411_904 and six_release.motion_attention == 42 * 37_761_280
    assert big_release.total == 17_443_864_384 and big_release.trainable == 10 * 104_898_560
    assert 5.5e9 < six_paper.total < 6.5e9 and six_paper.trainable == six_paper.total  # "about 6B", all trainable
    assert six_paper.motion_modules == 21 and big_paper.motion_modules == 20
    assert 17.5e9 < big_paper.total < 18.5e9  # "about 18B"
    assert big_paper.trainable == 20 * 104_908_800 + 33 * 24 * 3072  # 2.1B, not the paper's "about 4B"
    assert big_paper.backbone == big_release.backbone == 16_394_878_784


def test_count_parameters_groups_add_up():
    model = build_on_meta("6b", "paper")
    counts = count_parameters(model)
    assert counts["backbone"] + counts["motion_attention"] + counts["other"] == counts["total"]
    assert counts["other"] == 33 * 24 * 3072
