"""Evaluation asset: ``benchmark_eval``, one partition per benchmark (generated, TikTok, UBC Fashion)."""

from typing import Optional

from dagster import AssetExecutionContext, Config, MaterializeResult, StaticPartitionsDefinition, asset

from assets.metadata import materialized
from assets.resources import MTVCraftSettings
from assets.training import mv_dit
from pipeline.evaluation.benchmark_eval import evaluate_benchmark
from pipeline.evaluation.benchmarks import BENCHMARKS
from pipeline.evaluation.protocol import EvalProtocol

GROUP = "evaluation"
benchmark_partitions = StaticPartitionsDefinition(list(BENCHMARKS))


class BenchmarkEvalConfig(Config):
    """Which protocol: "auto" (tiny for a tiny MV-DiT, else the paper's App. A.3), "tiny" or "paper";
    set fields override it. ``dataset_root`` overrides MTVCRAFT_TIKTOK / MTVCRAFT_UBC_FASHION."""

    protocol: str = "auto"
    checkpoint: str = ""
    dataset_root: str = ""
    num_frames: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    num_inference_steps: Optional[int] = None
    max_videos: Optional[int] = None

    def protocol_for(self, tiny_model: bool) -> EvalProtocol:
        choice = {"auto": "tiny" if tiny_model else "paper"}.get(self.protocol, self.protocol)
        if choice not in ("tiny", "paper"):
            raise ValueError(f"benchmark_eval config protocol = {self.protocol!r}; choose auto, tiny or paper")
        base = EvalProtocol.tiny() if choice == "tiny" else EvalProtocol()
        changes = {k: getattr(self, k) for k in ("num_frames", "height", "width", "num_inference_steps", "max_videos")
                   if getattr(self, k) is not None}
        return base.with_changes(**changes)


def _is_tiny(checkpoint) -> bool:
    from pipeline.core.checkpoints import load_checkpoint

    return checkpoint.is_file() and load_checkpoint(checkpoint).train_config.get("model") == "tiny"


@asset(group_name=GROUP, deps=[mv_dit], partitions_def=benchmark_partitions, kinds={"pytorch", "lance"})
def benchmark_eval(context: AssetExecutionContext, mtvcraft: MTVCraftSettings, config: BenchmarkEvalConfig) -> MaterializeResult:
    """The App. A.3 protocol on one benchmark: PSNR/SSIM/LPIPS per video, FID/FVD/FID-VID over the set, beside the
    copy-the-reference and null-motion baselines; metadata: the Table 1 / Table 3 style report (paper rows quoted),
    a reference | ground truth | generated strip, the Lance table version."""
    from pipeline.evaluation.benchmark_eval import resolve_checkpoint

    settings = mtvcraft.settings()
    checkpoint = resolve_checkpoint(settings, config.checkpoint or None)
    protocol = config.protocol_for(_is_tiny(checkpoint))
    result = evaluate_benchmark(settings, context.partition_key, checkpoint, protocol, context.log.info,
                                dataset_root=config.dataset_root or None)
    return materialized(result, settings)
