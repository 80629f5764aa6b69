"""Where each stage of `vae-edge run` keeps its output inside a run folder."""

from pathlib import Path

from vae_edge.registry import BENCH_JSON


class RunFolder:
    """Where each stage's output lives inside a run folder."""

    def __init__(self, root):
        self.root = Path(root)
        self.config = self.root / "run_config.json"
        self.train = self.root / "train"
        self.model = self.train / "model.keras"
        self.evaluation = self.root / "evaluation.json"
        self.bundle = self.root / "bundle"
        self.bench = self.bundle / BENCH_JSON
        self.samples = self.root / "samples"
        self.report = self.root / "report.md"

    def done(self, stage: str) -> bool:
        marker = {
            "train": self.model, "evaluate": self.evaluation, "export": self.bundle / "verify.json",
            "bench": self.bench, "samples": self.samples, "report": None,
        }[stage]
        return marker is not None and marker.exists()
