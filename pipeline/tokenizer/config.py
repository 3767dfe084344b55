"""The 4DMoT training config (paper App. A.2 defaults): `TokenizerTrainConfig` and the model presets.

Hyper-parameters of Eq. 2 training (AdamW, the two-stage learning rate), how a
run is executed (Ray Train or local, workers, checkpoints), the window sampler,
and the training sources with their virtual-camera placement; the whole config
is saved in every checkpoint's ``train_config`` (`pipeline.tokenizer.loop`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from models.tokenizer import TokenizerConfig
from pipeline.core.step_schedule import learning_rate
from pipeline.motion.camera_placement import CameraPlacement
from pipeline.motion.sources import PAPER_SOURCES, check_weights
from pipeline.motion.windows import WindowConfig

MODEL_PRESETS = {"full": TokenizerConfig.full, "release": TokenizerConfig.release, "tiny": TokenizerConfig.tiny}


@dataclass
class TokenizerTrainConfig:
    """Hyper-parameters of 4DMoT training (App. A.2 defaults) and how to run it."""

    model: str | dict = "full"  # a preset name (full / release / tiny) or a TokenizerConfig dict
    steps_lr1: int = 200_000
    steps_lr2: int = 100_000
    lr1: float = 1e-4
    lr2: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-4
    batch_size: int = 32  # per worker (paper: 32 per GPU on 8 GPUs)
    num_workers: int = 1
    use_gpu: bool | None = None  # None: GPUs if the cluster (or, locally, this machine) has them
    backend: Literal["ray", "local"] = "ray"
    ray_address: str = ""  # "" = RAY_ADDRESS or a local Ray
    max_failures: int = 0  # Ray Train worker-group restarts; each resumes from the last checkpoint
    run_name: str = ""  # Ray run name; "" = tokenizer-<time>
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 100
    seed: int = 0
    float32: bool = True  # False: bf16 autocast (the paper trains in float32)
    windows: WindowConfig = field(default_factory=WindowConfig)
    resume: bool = True  # continue from the newest checkpoint in out_dir/checkpoints
    heldout_fraction: float = 0.1  # clips held out when no held-out set is given
    eval_length: int = 49  # frames per held-out window
    # Fine-tuning (beyond the paper): start from this checkpoint's weights and codebook (not its optimizer
    # or step) when out_dir has no checkpoint to resume; its normalisation is used when no stats are given.
    init_checkpoint: str = ""
    # Training sources (beyond the paper, which trains on curated motion only): mixing weights by source name
    # (pipeline.motion.sources); world-frame sources (motion capture) are placed per window by a virtual camera
    # with these CameraPlacement overrides ({} = its defaults). Both are saved in every checkpoint's train_config.
    sources: dict = field(default_factory=lambda: dict(PAPER_SOURCES))
    camera: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.windows, dict):
            self.windows = WindowConfig.from_dict(self.windows)
        self.sources = check_weights(dict(self.sources))
        self.placement()  # fail early on a bad camera setting
        self.betas = tuple(self.betas)
        if self.backend not in ("ray", "local"):
            raise ValueError(f"TokenizerTrainConfig.backend must be 'ray' or 'local', got {self.backend!r}")
        for name in ("steps_lr1", "batch_size", "num_workers", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps_lr2 < 0:
            raise ValueError(f"TokenizerTrainConfig.steps_lr2 must be >= 0, got {self.steps_lr2}")
        self.tokenizer_config()  # fail early on a bad model name

    @property
    def total_steps(self) -> int:
        return self.steps_lr1 + self.steps_lr2

    def learning_rate(self, step: int) -> float:
        """Two-stage schedule (App. A.2): lr1 for steps [0, steps_lr1), lr2 afterwards."""
        return learning_rate(step, self.lr1, later_lr=self.lr2, later_from=self.steps_lr1)

    def placement(self) -> CameraPlacement:
        return CameraPlacement.from_dict({**CameraPlacement().to_dict(), **self.camera})

    def tokenizer_config(self) -> TokenizerConfig:
        if isinstance(self.model, dict):
            return TokenizerConfig.from_dict(self.model)
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"TokenizerTrainConfig.model must be one of {sorted(MODEL_PRESETS)} or a dict, got {self.model!r}")
        return MODEL_PRESETS[self.model]()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["windows"] = self.windows.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerTrainConfig":
        return cls(**data)
