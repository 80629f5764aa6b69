"""Where each stage of `vae-edge run` keeps its output inside a run folder."""

import json
from pathlib import Path

from vae_edge.bundle import MANIFEST
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
        """Whether the stage's output is there; an export counts only when every target was written and verified."""
        if stage == "export":
            try:
                verified = json.loads((self.bundle / "verify.json").read_text())
                manifest = json.loads((self.bundle / MANIFEST).read_text())
            except (OSError, ValueError):  # missing or cut short: the stage runs again
                return False
            return isinstance(verified, dict) and verified.get("passed") is True and "rejected" not in manifest
        marker = {
            "train": self.model, "evaluate": self.evaluation, "bench": self.bench, "samples": self.samples, "report": None,
        }[stage]
        return marker is not None and marker.exists()
