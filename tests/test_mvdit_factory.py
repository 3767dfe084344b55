"""MV-DiT built without waste (`pipeline.mvdit.factory`): on ``meta``, backbone weights read once and assigned;
new modules initialised on the device; trainable float32 / frozen bf16 (float32 where diffusers keeps it);
trainable-only checkpoints of a frozen backbone, which `animate` loads back through the backbone reference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

from models.mvdit.cogvideox import MVDiTCogVideoX, MVDiTConfig
from models.mvdit.wan import MVDiTWanConfig
from pipeline.core.checkpoints import CorruptCheckpointError, load_checkpoint, save_checkpoint
from pipeline.mvdit.factory import backbone_reference, build_from_backbone, is_backbone_key, model_from_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_6b_from_a_stock_folder_equals_the_in_memory_conversion(tmp_path):
    torch.manual_seed(1)
    tiny = MVDiTConfig.tiny()
    stock = CogVideoXTransformer3DModel(**{**tiny.backbone, "in_channels": 4})  # text-to-video: 4 channels
    stock.save_pretrained(tmp_path / "transformer")
    kwargs = tiny.model_kwargs()
    model = build_from_backbone(kwargs, tmp_path)
    reference = MVDiTCogVideoX.from_backbone(stock, **{k: kwargs[k] for k in ("motion_token_dim", "unconditional_frames")})
    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        if is_backbone_key(name):  # the backbone: the stock weights (+ zero reference channels), bit for bit
            assert torch.equal(ours[name], value), name
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    attn = model.transformer_blocks[0].attn0  # fresh motion attention: its own init (zero output projection)
    assert not attn.to_out[0].weight.any() and attn.to_q.weight.std() > 0
    assert model.unconditional_motion_token.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())  # the 6B trains all


def test_18b_frozen_backbone_is_bf16_except_what_diffusers_keeps_in_fp32(tmp_path):
    torch.manual_seed(1)
    tiny = MVDiTWanConfig.tiny()
    stock = WanTransformer3DModel(**tiny.backbone)
    stock.save_pretrained(tmp_path)
    model = build_from_backbone(tiny.model_kwargs(), tmp_path, frozen_dtype=torch.bfloat16)
    keep = WanTransformer3DModel._keep_in_fp32_modules
    stock_state = stock.state_dict()
    for name, param in model.named_parameters():
        if param.requires_grad:  # motion attention, its pre-norm, c_m∅: float32 master weights
            assert not is_backbone_key(name) and param.dtype == torch.float32, name
        elif any(k in name.split(".") for k in keep):
            assert param.dtype == torch.float32 and torch.equal(param, stock_state[name]), name
        else:
            assert param.dtype == torch.bfloat16 and torch.equal(param, stock_state[name].bfloat16()), name
    assert model.rope.freqs_cos.device.type == "cpu"  # non-persistent RoPE tables rebuilt off meta
    with pytest.raises(ValueError, match="does not match MV-DiT"):
        build_from_backbone(MVDiTWanConfig.tiny(num_layers=6).model_kwargs() | {"num_layers": 6},
                            _wan_with_layers(tmp_path / "other", 6, drop="blocks.5.ffn.net.2.weight"))


def _wan_with_layers(folder: Path, layers: int, drop: str) -> Path:
    from safetensors.torch import load_file, save_file

    stock = WanTransformer3DModel(**{**MVDiTWanConfig.tiny().backbone, "num_layers": layers})
    stock.save_pretrained(folder)
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    state.pop(drop)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    return folder


def test_frozen_backbone_checkpoint_holds_the_trained_weights_and_a_verified_reference(tmp_path):
    torch.manual_seed(2)
    tiny = MVDiTWanConfig.tiny()
    WanTransformer3DModel(**tiny.backbone).save_pretrained(tmp_path / "backbone")
    model = build_from_backbone(tiny.model_kwargs(), tmp_path / "backbone")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(0.01)  # "trained"
    model.set_mean_joints(np.zeros((24, 3)))
    ref = backbone_reference(tmp_path / "backbone", cache=tmp_path / "ckpt" / "backbone_sha256.json")
    path = save_checkpoint(tmp_path / "ckpt", 1, model, None, stats_mean=torch.zeros(24, 3, dtype=torch.float64),
                           stats_std=torch.ones(3), sampler={"seed": 0}, train_config={},
                           tokenizer_config={"mvdit": tiny.model_kwargs()}, backbone=ref)
    ckpt = load_checkpoint(path)
    assert ckpt.model_state and all(not is_backbone_key(k) for k in ckpt.model_state)
    assert path.stat().st_size < 0.5 * (tmp_path / "backbone" / "diffusion_pytorch_model.safetensors").stat().st_size
    loaded = model_from_checkpoint(ckpt)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # A changed backbone file is refused, naming the checkpoint and the folder.
    weights = tmp_path / "backbone" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="was trained on the backbone"):
        model_from_checkpoint(load_checkpoint(path))


MEASURE = """
import json, sys, torch
from pipeline.mvdit.factory import build_from_backbone

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

kwargs = json.loads(sys.argv[1])
torch.set_num_threads(1)
import models.mvdit.cogvideox, diffusers.models.transformers.cogvideox_transformer_3d  # imports before measuring
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
model = build_from_backbone(kwargs, sys.argv[2])
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"weights": weights, "peak_growth": status("VmHWM:") - before}))
"""


def test_loading_a_few_hundred_mb_backbone_allocates_its_weights_once(tmp_path):
    """Peak RSS growth of a fresh process while building MV-DiT from a ~300 MB diffusers folder < 1.3x the
    weights (the old path, from_pretrained + a randomly initialised MV-DiT + load_state_dict, holds 2x+)."""
    torch.manual_seed(0)
    backbone = {**MVDiTConfig.tiny().backbone, "num_attention_heads": 16, "attention_head_dim": 64,
                "in_channels": 16, "out_channels": 16, "time_embed_dim": 512, "text_embed_dim": 256,
                "num_layers": 4}
    CogVideoXTransformer3DModel(**backbone).save_pretrained(tmp_path / "transformer")
    size = (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert 200e6 < size < 500e6, size
    kwargs = MVDiTConfig(backbone={**backbone, "in_channels": 32}, motion_token_dim=64,
                         unconditional_frames=4).model_kwargs()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(MEASURE), json.dumps(kwargs), str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["weights"] > size  # the MV-DiT: the backbone plus motion attention and the reference channels
    assert out["peak_growth"] < 1.3 * out["weights"], out
