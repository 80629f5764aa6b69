"""Training: data in, a run folder with the best model, its history and pictures out.

    from vae_edge.train import TrainConfig, train
    train(TrainConfig(variant="small", epochs=5), "runs/small")

`config` defines a run and the machine budgets, `loop` trains, `devices` and `hosts` spread it
over devices and processes (JAX), `backend` picks the Keras backend before Keras loads,
`evaluation` scores a trained model and `pictures` draws the run. Importing the package
loads no Keras: `loop` imports it when training starts.
"""

from vae_edge.train.config import ACCELERATOR_BUDGET, CPU_BUDGET, Budget, LRSchedule, TrainConfig, TrainResult
from vae_edge.train.loop import train

__all__ = ["ACCELERATOR_BUDGET", "CPU_BUDGET", "Budget", "LRSchedule", "TrainConfig", "TrainResult", "train"]
