"""Codebook analysis of App. E.3 / Fig. 8: usage categories, cosine histogram, plots and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.tokenizer.codebook import (
    CodeUsage,
    analyze_codebook,
    code_usage,
    cosine_histogram,
    plot_cosine,
    plot_usage,
    usage_categories,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


def hand_made_usage() -> np.ndarray:
    """200 windows x 10 codes: code k occurs in a chosen number of windows (a few tokens each)."""
    windows_with = {0: 200, 1: 20, 2: 1, 3: 2, 4: 30, 5: 31, 6: 0, 7: 0, 8: 100, 9: 3}
    counts = np.zeros((200, 10), dtype=np.int64)
    for code, n in windows_with.items():
        counts[:n, code] = 1 + code  # token counts per window do not change the per-window reading
    return counts


def test_categories_on_a_hand_made_usage_matrix():
    usage = CodeUsage.from_matrix(hand_made_usage())
    # window shares: 100%, 10%, 0.5%, 1%, 15%, 15.5%, 0, 0, 50%, 1.5%
    np.testing.assert_allclose(usage.window_share, [1.0, 0.1, 0.005, 0.01, 0.15, 0.155, 0, 0, 0.5, 0.015])
    cats = usage_categories(usage.window_share)
    assert cats == pytest.approx({"underutilized": 0.3, "active": 0.4, "frequent": 0.3, "unused": 0.2})
    # per-token reading: token counts 200*1, 20*2, 1*3, 2*4, 30*5, 31*6, 0, 0, 100*9, 3*10 over 1717 tokens
    tokens = np.array([200, 40, 3, 8, 150, 186, 0, 0, 900, 30])
    np.testing.assert_allclose(usage.token_share, tokens / tokens.sum())
    by_token = usage_categories(usage.token_share)
    expect = tokens / tokens.sum()
    assert by_token["frequent"] == pytest.approx(np.mean(expect > 0.15))
    assert by_token["underutilized"] == pytest.approx(np.mean(expect < 0.01))
    assert sum(by_token[k] for k in ("underutilized", "active", "frequent")) == pytest.approx(1.0)


def test_code_usage_from_id_batches_matches_the_matrix():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 16, size=(12, 5, 24))  # 12 windows of (5 latent frames, 24 joints)
    matrix = np.stack([np.bincount(w.ravel(), minlength=16) for w in ids])
    from_batches = code_usage([torch.from_numpy(ids[:7]), ids[7:]], 16)
    reference = CodeUsage.from_matrix(matrix)
    np.testing.assert_array_equal(from_batches.window_counts, reference.window_counts)
    np.testing.assert_array_equal(from_batches.token_counts, reference.token_counts)
    assert (from_batches.num_windows, from_batches.num_tokens) == (12, 12 * 5 * 24)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        code_usage([np.array([[3, 16]])], 16)


def test_cosine_histogram_against_numpy():
    rng = np.random.default_rng(1)
    book = rng.normal(size=(50, 8))
    hist = cosine_histogram(torch.from_numpy(book), bins=20)
    unit = book / np.linalg.norm(book, axis=1, keepdims=True)
    sims = (unit @ unit.T)[np.triu_indices(50, k=1)]
    counts, _ = np.histogram(sims, bins=hist.edges)
    assert hist.num_pairs == 50 * 49 // 2 == counts.sum() == hist.counts.sum()
    assert np.abs(hist.counts - counts).sum() <= 2  # float32 vs float64 at bin edges
    assert hist.mean == pytest.approx(sims.mean(), abs=1e-5)
    assert hist.mean_abs == pytest.approx(np.abs(sims).mean(), abs=1e-5)
    # orthogonal codes: every pair in the bin holding 0; a subset bounds the cost
    eye = cosine_histogram(torch.eye(6), bins=4)
    assert eye.counts.tolist() == [0, 0, 15, 0] and eye.mean == 0
    assert cosine_histogram(torch.eye(100), max_codes=10).num_pairs == 45


def test_report_plots_and_json_beside_the_checkpoint(tmp_path):
    usage = CodeUsage.from_matrix(hand_made_usage())
    book = torch.randn(10, 4)
    report = analyze_codebook(usage, book)
    assert report.cosine.num_codes == 8  # the two unused codes are left out of the pairs
    assert plot_usage(report)[:8] == PNG and plot_cosine(report)[:8] == PNG
    ckpt = tmp_path / "step_00000010.safetensors"
    paths = write_report(report, ckpt)
    assert paths["json"] == tmp_path / "step_00000010.codebook.json"
    data = json.loads(paths["json"].read_text())
    assert data["categories_by_window"]["active"] == pytest.approx(0.4)
    assert data["num_windows"] == 200 and data["used_codes"] == 8 and data["active_code_share"] == pytest.approx(0.8)
    assert "share of held-out windows" in data["definition"]
    assert paths["usage_png"].read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="codebook has 5 rows"):
        analyze_codebook(usage, torch.randn(5, 4))
