"""The release layouts of MV-DiT-7B / MV-DiT-17B match the official state_dicts name by name and shape by shape
(../shared/release-format/mvdit-{7b,17b}-motion.json), built on the meta device; zero state dicts made
from the JSON load with strict=True."""

import json

import pytest
import torch
from conftest import shared_path
from diffusers import WanTransformer3DModel

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.motion_attention import MotionAttentionConfig
from models.mvdit.wan import (
    WAN_I2V_14B,
    MVDiTWanConfig,
    diffusers_name,
    from_release_state_dict,
    release_name,
    to_release_state_dict,
)


def _spec(name):
    return json.loads(shared_path(f"release-format/{name}").read_text())


def _entries(items, i=None):
    return [(e["name"] if i is None else e["name"].format(i=i), tuple(e["shape"])) for e in items]


def expected_7b():
    """The full 1,529-entry layout, in state_dict order, rebuilt from the JSON alone."""
    spec = _spec("mvdit-7b-motion.json")
    top = _entries(spec["stock_top_level_entries"])
    split = next(i for i, (name, _) in enumerate(top) if name.startswith("norm_final"))
    blocks = [
        entry for i in range(spec["base_config_as_released"]["num_layers"])
        for entry in _entries(spec["added_per_block_template"], i) + _entries(spec["stock_per_block_template"], i)
    ]
    uncond = spec["unconditional_motion_token"]
    entries = [(uncond["name"], tuple(uncond["shape"]))] + top[:split] + blocks + top[split:]
    changed = {e["name"]: tuple(e["shape"]) for e in spec["changed"]}
    entries = [(name, changed.get(name, shape)) for name, shape in entries]
    assert {n for n, _ in _entries(spec["added"])} <= {n for n, _ in entries}  # the rebuild covers the delta
    return entries, spec


def expected_17b():
    spec = _spec("mvdit-17b-motion.json")
    entries = _entries(spec["base_top_level_entries"]) + [
        entry
        for i in range(spec["base_config"]["num_layers"])
        for entry in _entries(spec["base_per_block_template"], i)
    ]
    return dict(entries) | dict(_entries(spec["added"])), spec


def zero_state_dict(shapes):
    """Zeros of the given shapes without memory (stride-0 views of one scalar)."""
    zero = torch.zeros(())
    return {name: zero.expand(shape) for name, shape in shapes}


@pytest.fixture(scope="module")
def model_7b():
    with torch.device("meta"):
        return MVDiTConfig.cogvideox_5b("release").build()


@pytest.fixture(scope="module")
def model_17b():
    with torch.device("meta"):
        return MVDiTWanConfig.wan_i2v_14b("release").build()


def test_7b_names_shapes_and_order_match_the_release(model_7b):
    entries, spec = expected_7b()
    ours = [(name, tuple(t.shape)) for name, t in model_7b.state_dict().items()]
    assert len(ours) == len(entries) == spec["counts"]["official_state_dict_entries"] == 1529
    assert ours == entries  # names, shapes and state_dict order
    assert sum(p.numel() for p in model_7b.parameters()) == spec["counts"]["official_total_parameters"]
    assert model_7b.motion_attention_config == MotionAttentionConfig.release_7b()


def test_7b_zero_state_dict_from_the_json_loads_strictly():
    entries, _ = expected_7b()
    with torch.device("meta"):
        model = MVDiTConfig.cogvideox_5b("release").build()
    result = model.load_state_dict(zero_state_dict(entries), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert model.unconditional_motion_token.device.type == "cpu"
    assert model.transformer_blocks[41].attn0.to_out[0].weight.abs().max() == 0


def test_17b_release_names_and_shapes_match_after_renaming(model_17b):
    expected, spec = expected_17b()
    ours = {name: tuple(t.shape) for name, t in to_release_state_dict(model_17b.state_dict()).items()}
    assert len(ours) == len(model_17b.state_dict()) == 1423 == spec["counts"]["official_state_dict_entries"]
    assert set(ours) == set(expected)
    mismatched = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert not mismatched
    assert sum(p.numel() for p in model_17b.parameters()) == spec["counts"]["official_total_parameters"]
    assert model_17b.motion_attention_config == MotionAttentionConfig.release_17b()


def test_17b_rename_table_agrees_with_diffusers_conversion_listed_in_the_json():
    table = _spec("mvdit-17b-motion.json")["diffusers_crosscheck"][
        "rename_original_to_diffusers (block 0 pattern + top level, identical names omitted)"
    ]
    for original, diffusers in table.items():
        for i in (0, 39):
            o, d = original.replace("{i}", str(i)), diffusers.replace("{i}", str(i))
            assert diffusers_name(o) == d and release_name(d) == o


def test_17b_stock_diffusers_wan_maps_onto_the_release_base():
    expected, spec = expected_17b()
    base = dict(_entries(spec["base_top_level_entries"]))
    base.update(
        entry for i in range(40) for entry in _entries(spec["base_per_block_template"], i)
    )
    with torch.device("meta"):
        stock = WanTransformer3DModel(**WAN_I2V_14B)
    renamed = {release_name(n): tuple(t.shape) for n, t in stock.state_dict().items()}
    assert renamed == base and len(renamed) == spec["counts"]["base_state_dict_entries"] == 1303


def test_17b_zero_release_state_dict_loads_strictly():
    expected, _ = expected_17b()
    with torch.device("meta"):
        model = MVDiTWanConfig.wan_i2v_14b("release").build()
    state = from_release_state_dict(zero_state_dict(expected.items()))
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert model.blocks[36].motion_attn.k.weight.device.type == "cpu"
    assert model.blocks[36].norm4.weight.abs().max() == 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if "motion_attn" not in n and "norm4" not in n)
