"""What defines a training run, and the machine budgets that fill in what a run leaves unset."""

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vae_edge.data import EMBEDDED_DATASET
from vae_edge.registry import Annealing, DecoderLayout, Precision, ReconstructionLoss


@dataclass(frozen=True)
class Budget:
    """How long training runs, and at what peak learning rate, when the run leaves them to the machine."""

    epochs: int
    learning_rate: float


# A 2-core CPU's keeps `make demo` within 8 minutes with `small` under 120 nats: short schedules
# learn most at a high peak (the mirrored decoder at 6e-3 on JAX: 13 epochs 118.5 and 118.9 nats
# for seeds 0 and 1, 14 epochs 115.8 and 116.8), and TensorFlow's different random draws cost about
# a nat, so 14. An accelerator trains longer at the peak measured there: 90 epochs gave 102.4 to 102.9
# nats over three seeds, where 60 gave 102.7 to 104.6, too near the goal of 105. From
# benchmarks/results/demo_recipes-h200-jax*.md and `make demo` (docs/training.md).
CPU_BUDGET = Budget(epochs=14, learning_rate=6e-3)
ACCELERATOR_BUDGET = Budget(epochs=90, learning_rate=2e-3)


class LRSchedule(StrEnum):
    COSINE = "cosine"  # linear warm-up to the peak, then cosine decay to zero
    CONSTANT = "constant"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `train_config.json` in the run folder."""

    variant: str = "small"
    dataset: str = EMBEDDED_DATASET
    epochs: int | None = None  # None: the machine's budget (CPU_BUDGET, or ACCELERATOR_BUDGET on a GPU/TPU)
    batch_size: int = 32  # global: split evenly over the devices
    learning_rate: float | None = None  # the peak, reached at the end of the warm-up; None: the machine's budget
    lr_schedule: str = LRSchedule.COSINE
    warmup_fraction: float = 0.05  # of all training steps
    clip_norm: float | None = 200.0  # global gradient norm; None: no clipping
    latent_dim: int | None = None
    decoder_layout: str = DecoderLayout.MIRROR
    kl_loss_weight: float = 1.0
    kl_annealing: str = Annealing.NONE
    kl_warmup_steps: int = 1000
    free_bits: float = 0.0
    reconstruction_loss: str = ReconstructionLoss.BCE
    precision: str = Precision.FLOAT32
    devices: int | str = 1  # a count, or "all" local (and, multi-host, remote) accelerators; >1 needs JAX
    seed: int = 0
    max_samples: int | None = None
    image_size: int | None = None
    channels: int | None = None
    conditional: bool = False  # condition encoder and decoder on the data set's class labels


@dataclass
class TrainResult:
    run_dir: Path
    history: dict
    seconds_per_epoch: float
    wrote_run_dir: bool = True  # False on every process but 0 of a multi-host run: only process 0 writes

