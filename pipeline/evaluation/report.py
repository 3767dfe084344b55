"""The ``benchmark_eval`` results in Table 1 (TikTok) / Table 3 (Fashion) form (Sec. 4): the Lance table's schema,
the paper's published rows, the Markdown report and the first video's picture (PNG strip, side-by-side video).

Rows go to the Lance table ``benchmark_eval`` keyed by (benchmark, method, video, run id). The report puts the
paper's rows (quoted) above this run's (measured) and prints each distribution metric's sample count and
feature dimension; a metric fitted to fewer samples than dimensions is listed apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core import previews
from pipeline.evaluation.protocol import EvalProtocol

TABLE = "benchmark_eval"
METHODS = ("mtvcraft", "copy_reference", "null_motion")
METHOD_LABELS = {"mtvcraft": "MTVCraft (ours, this checkpoint)", "copy_reference": "copy the reference (baseline)",
                 "null_motion": "null motion tokens c_m∅ (baseline)"}
METRIC_COLUMNS = ("psnr", "ssim", "lpips", "fid", "fvd", "fid_vid")
METRIC_HEADERS = ("PSNR↑", "SSIM↑", "LPIPS↓", "FID↓", "FVD↓", "FID-VID↓")
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2, "fvd": 2, "fid_vid": 2}  # as the paper prints them
ALL_VIDEOS = "*"  # video_id of a method's aggregate row

BENCHMARK_EVAL = pa.schema([
    ("id", pa.string()),            # "<benchmark>|<method>|<video_id>|<run_id>"
    ("benchmark", pa.string()),
    ("method", pa.string()),        # mtvcraft | copy_reference | null_motion
    ("video_id", pa.string()),      # "*" on the aggregate row
    ("run_id", pa.string()),        # hash of the checkpoint checksum + protocol
    ("row_kind", pa.string()),      # video | aggregate
    ("checkpoint", pa.string()),
    ("num_videos", pa.int32()),
    ("frames_evaluated", pa.int32()),  # per video; the aggregate row: all videos together
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("num_inference_steps", pa.int32()),
    ("motion_guidance_scale", pa.float32()),
    ("psnr", pa.float64()),         # null where not applicable (distribution metrics on video rows) or not computed
    ("ssim", pa.float64()),
    ("lpips", pa.float64()),
    ("fid", pa.float64()),
    ("fvd", pa.float64()),
    ("fid_vid", pa.float64()),
    ("not_computed", pa.string()),  # JSON {metric: "not computed: ..."}
    ("protocol", pa.string()),      # JSON of EvalProtocol
    ("evaluated_at", pa.string()),  # ISO-8601 UTC
])

# Published rows, copied verbatim from the paper's text (underlines for second-best dropped). Tab-separated:
# model, PSNR, SSIM, LPIPS, FID, FVD, FID-VID; "-" where the paper has no value.
PAPER_TABLE_1_TIKTOK = """\
MusePose (Hu, 2024)	18.20	0.757	0.248	41.99	532.75	14.60
MoorAA (Hu, 2024)	18.62	0.764	0.230	37.28	501.22	12.40
ControlNeXt (Peng et al., 2024)	16.31	0.728	0.296	33.48	548.01	28.23
Animate-X (Tan et al., 2024)	16.71	0.743	0.285	32.77	508.63	17.47
MimicMotion (Zhang et al., 2024a)	19.30	0.751	0.220	34.88	472.51	9.30
RealisDance-DiT (Zhou et al., 2025)	17.55	0.717	0.261	30.39	458.81	-
Unianimate-DiT (Wang et al., 2025)	19.35	0.765	0.235	28.47	402.14	9.12
MTVCraft-6B	19.35	0.760	0.219	23.58	317.21	8.56
MTVCraft-18B	19.84	0.779	0.217	20.70	276.65	7.31"""
PAPER_TABLE_3_FASHION = """\
MusePose (Hu, 2024)	22.20	0.896	0.067	14.95	96.17	10.94
MooraAA (Hu, 2024)	20.83	0.880	0.093	27.74	149.66	10.13
ControlNeXt (Peng et al., 2024)	18.48	0.853	0.132	13.82	143.02	14.60
Animate-X (Tan et al., 2024)	22.15	0.893	0.069	10.11	70.47	11.87
MimicMotion (Zhang et al., 2024a)	23.80	0.913	0.061	15.40	80.89	8.17
RealisDance-DiT (Zhou et al., 2025)	23.33	0.908	0.053	10.81	72.94	-
Unianimate-DiT (Wang et al., 2025)	23.52	0.907	0.060	12.79	88.36	6.12
MTVCraft-6B	23.42	0.917	0.059	8.91	67.42	4.56
MTVCraft-18B	23.90	0.923	0.057	8.74	64.88	4.41"""
PAPER_TABLES = {"tiktok": ("Table 1 (TikTok)", PAPER_TABLE_1_TIKTOK),
                "ubc_fashion": ("Table 3 (Fashion)", PAPER_TABLE_3_FASHION)}


def paper_rows(benchmark: str) -> list[list[str]]:
    """The paper's published rows for ``benchmark`` as strings ([] for the generated benchmark)."""
    if benchmark not in PAPER_TABLES:
        return []
    return [line.split("\t") for line in PAPER_TABLES[benchmark][1].splitlines()]


def _cell(value: float | str | None, metric: str, notes: list[str]) -> str:
    if isinstance(value, str):
        if value not in notes:
            notes.append(value)
        return f"n/c[{notes.index(value) + 1}]"
    if value is None:
        return "-"
    return f"{value:.{DECIMALS[metric]}f}"


def below_dimension(counts: dict[str, tuple[int, int]], metric: str) -> bool:
    """Whether either side of ``metric`` has fewer samples than its feature dimension (a rank-deficient covariance)."""
    from pipeline.evaluation.metrics import FEATURE_DIMS

    return metric in counts and min(counts[metric]) < FEATURE_DIMS[metric]


def _frames_text(frames_evaluated: int | list[int]) -> str:
    if isinstance(frames_evaluated, int):
        return f"{frames_evaluated} frames each"
    low, high = min(frames_evaluated), max(frames_evaluated)
    each = f"{low}" if low == high else f"{low}-{high}"
    return f"{sum(frames_evaluated)} frames in all ({each} per video)"


def report_markdown(benchmark: str, run: str, checkpoint: Path, protocol: EvalProtocol,
                    overall: dict[str, dict[str, float | str]], num_videos: int, frames_evaluated: int | list[int],
                    counts: dict[str, dict[str, tuple[int, int]]] | None = None, window: int | None = None) -> str:
    """The Table 1 / Table 3 style Markdown: the paper's rows (quoted) above this run's rows (measured), then each
    distribution metric with its sample counts and feature dimension. A distribution metric fitted to fewer
    samples than dimensions is not put in the row beside the published values: its cell says "n < d" and the
    number stands in the counts table, marked."""
    counts = counts or {}
    span = ("whole videos" + (f", in windows of {window} frames overlapping by {protocol.overlap}" if window else "")
            if protocol.num_frames is None else f"the first {protocol.num_frames} frames of each video")
    header = "| Model | Source | " + " | ".join(METRIC_HEADERS) + " |"
    lines = [f"## benchmark_eval: {benchmark} (run {run})", "",
             f"Checkpoint `{checkpoint.name}`; {num_videos} videos, {_frames_text(frames_evaluated)} evaluated at "
             f"{protocol.height}x{protocol.width} ({span}; frame 0 "
             f"{'left out: it is the reference' if protocol.skip_reference_frame else 'included'}); DDIM "
             f"{protocol.num_inference_steps} steps, motion CFG {protocol.motion_guidance_scale}, stride "
             f"{protocol.frame_stride}, SSIM {protocol.ssim_mode}. Text prompt \"{protocol.text_prompt}\" / text CFG "
             f"{protocol.text_guidance_scale} apply to the 18B model only (the 6B MV-DiT has no text branch).", "",
             header, "|" + "---|" * (2 + len(METRIC_COLUMNS))]
    quoted = paper_rows(benchmark)
    if quoted:
        source = f"paper {PAPER_TABLES[benchmark][0]}, quoted"
        lines += [f"| {row[0]} | {source} | " + " | ".join(row[1:]) + " |" for row in quoted]
    notes: list[str] = []
    for method in METHODS:
        if method not in overall:
            continue
        cells = ["n < d (below)" if below_dimension(counts.get(method, {}), m) and not isinstance(
                     overall[method].get(m), str) else _cell(overall[method].get(m), m, notes)
                 for m in METRIC_COLUMNS]
        name = f"**{METHOD_LABELS[method]}**" if method == "mtvcraft" else METHOD_LABELS[method]
        lines.append(f"| {name} | this run | " + " | ".join(cells) + " |")
    lines.append("")
    if quoted:
        lines.append(f"Rows marked \"quoted\" are copied from the paper's {PAPER_TABLES[benchmark][0]}, not "
                     "measured here; they come from full-size models on the full test set.")
    else:
        lines.append("The paper has no generated benchmark, so no published row is comparable; read our model "
                     "against the two baselines.")
    lines += [f"n/c[{i + 1}]: {note}" for i, note in enumerate(notes)]
    if counts:
        lines += ["", *sample_count_table(overall, counts)]
    return "\n".join(lines) + "\n"


def sample_count_table(overall: dict[str, dict[str, float | str]],
                       counts: dict[str, dict[str, tuple[int, int]]]) -> list[str]:
    """Markdown lines: every distribution metric's value beside its sample counts and feature dimension."""
    from pipeline.evaluation.metrics import FEATURE_DIMS, SAMPLE_UNITS

    lines = ["### Distribution metrics: samples and feature dimension", "",
             "| Model | metric | value | samples: generated / real | feature dim d | n >= d |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        for metric, header in zip(METRIC_COLUMNS, METRIC_HEADERS):
            if metric not in FEATURE_DIMS or metric not in counts.get(method, {}):
                continue
            value = overall[method].get(metric)
            shown = "n/c" if isinstance(value, str) else "-" if value is None else f"{value:.{DECIMALS[metric]}f}"
            ours, real = counts[method][metric]
            low = below_dimension(counts[method], metric)
            verdict = "no: rank-deficient covariance, not comparable with published values" if low else "yes"
            mark = " (n < d)" if low and shown != "n/c" else ""
            lines.append(f"| {METHOD_LABELS[method]} | {header} | {shown}{mark} "
                         f"| {ours} / {real} {SAMPLE_UNITS[metric]} | {FEATURE_DIMS[metric]} | {verdict} |")
    return lines


def strip_png(first: dict[str, np.ndarray], columns: int = 6) -> bytes:
    """PNG of the first video: rows reference | ground truth | MTVCraft (| null motion), at sampled frames."""
    truth = first["truth"]
    picks = np.linspace(0, len(truth) - 1, min(columns, len(truth))).round().astype(int)
    rows = [("reference", np.repeat(truth[:1], len(truth), 0)), ("ground truth", truth),
            ("MTVCraft", first["mtvcraft"])]
    if "null_motion" in first:
        rows.append(("null motion", first["null_motion"]))
    images, labels = [], []
    for name, frames in rows:
        for t in picks:
            images.append(frames[t])
            labels.append(f"{name} t={t}")
    height = min(160, max(96, truth.shape[1]))
    return previews.encode_png(previews.contact_sheet(images, columns=len(picks), height=height, labels=labels))


def side_by_side(first: dict[str, np.ndarray]) -> np.ndarray:
    """(T, H, k * W, 3) video: reference | ground truth | MTVCraft (| null motion)."""
    truth = first["truth"]
    parts = [np.repeat(truth[:1], len(truth), 0), truth, first["mtvcraft"]]
    if "null_motion" in first:
        parts.append(first["null_motion"])
    return np.concatenate(parts, axis=2)
