"""The paper's six metrics over one benchmark run (Sec. 4, App. J): ``MetricSuite`` loads the networks once and
caches the ground truth's features; ``MethodScores`` holds one method's scores.

Per video: PSNR, SSIM, LPIPS (paired, averaged over frames). Over the set: FID, FVD, FID-VID. Frame 0 is the
condition itself, so by default it is left out of every metric (``skip_reference_frame``): a copy of it
would score PSNR = inf. A metric whose weights are absent is "not computed: missing <file> ..." (never a
substitute network).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.evaluation.protocol import EvalProtocol, device


@dataclass
class MethodScores:
    """One method's per-video paired metrics and set-level distribution metrics; strings are "not computed"."""

    per_video: list[dict[str, float | str]]
    overall: dict[str, float | str]
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (generated, real) samples


def _load_network(loader, weights: str | None, where: str):
    from pipeline.evaluation.metrics import NOT_COMPUTED, MissingWeights

    try:
        return loader(weights or None, where), None
    except MissingWeights as reason:
        return None, f"{NOT_COMPUTED}{reason}"


class MetricSuite:
    """The paper's six metrics with their networks loaded once, and the ground truth's features cached."""

    def __init__(self, weights: str, protocol: EvalProtocol, truths: list[np.ndarray]):
        from pipeline.evaluation.metrics import load_i3d, load_inception, load_lpips_alexnet

        self.protocol = protocol
        self.truths = truths
        self.device = device()
        self.lpips, self.lpips_reason = _load_network(load_lpips_alexnet, weights, self.device)
        self.inception, self.fid_reason = _load_network(load_inception, weights, self.device)
        self.i3d, self.i3d_reason = _load_network(load_i3d, weights, self.device)
        self._truth_features: dict[str, object] = {}

    def paired(self, generated: np.ndarray, truth: np.ndarray) -> dict[str, float | str]:
        from pipeline.evaluation.metrics import lpips_distance, psnr, ssim

        scores: dict[str, float | str] = {"psnr": psnr(generated, truth),
                                          "ssim": ssim(generated, truth, self.protocol.ssim_mode)}
        if self.lpips is None:
            scores["lpips"] = self.lpips_reason
        else:
            scores["lpips"] = lpips_distance(self.lpips, generated, truth, device=self.device)
        return scores

    def distribution(self, generated: list[np.ndarray]) -> dict[str, float | str]:
        from pipeline.evaluation.metrics import (
            NOT_COMPUTED,
            NotEnoughSamples,
            fid_from_features,
            fid_vid_from_features,
            fvd_from_features,
        )

        method = self.protocol.frechet_method
        out: dict[str, float | str] = {}
        if self.inception is None:
            out["fid"] = self.fid_reason
        else:
            truth = self._cached("fid", lambda: self._frames(self.truths))
            try:
                out["fid"] = fid_from_features(self._frames(generated), truth, method)
            except NotEnoughSamples as reason:
                out["fid"] = f"{NOT_COMPUTED}{reason}"
        if self.i3d is None:
            out["fvd"] = out["fid_vid"] = self.i3d_reason
            return out
        truth = self._cached("i3d", lambda: self._segments(self.truths))
        gen = self._segments(generated)
        for name, formula in (("fvd", fvd_from_features), ("fid_vid", fid_vid_from_features)):
            try:
                out[name] = formula(gen, truth, method)
            except NotEnoughSamples as reason:
                out[name] = f"{NOT_COMPUTED}{reason}"
        return out

    def _frames(self, videos: list[np.ndarray]) -> np.ndarray:
        from pipeline.evaluation.metrics import inception_features

        return inception_features(self.inception, videos, device=self.device)

    def _segments(self, videos: list[np.ndarray]) -> list[np.ndarray]:
        from pipeline.evaluation.metrics import i3d_segment_features

        return [i3d_segment_features(self.i3d, v, device=self.device) for v in videos]

    def _cached(self, key: str, compute):
        if key not in self._truth_features:
            self._truth_features[key] = compute()
        return self._truth_features[key]

    def score(self, generated: list[np.ndarray]) -> MethodScores:
        from pipeline.evaluation.metrics import sample_counts

        per_video = [self.paired(g, t) for g, t in zip(generated, self.truths)]
        overall: dict[str, float | str] = {}
        for name in ("psnr", "ssim", "lpips"):
            values = [v[name] for v in per_video]
            overall[name] = values[0] if isinstance(values[0], str) else float(np.mean(values))
        overall.update(self.distribution(generated))
        ours, real = sample_counts(generated), sample_counts(self.truths)
        return MethodScores(per_video, overall, {m: (ours[m], real[m]) for m in ours})
