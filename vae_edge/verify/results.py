"""Verification results as small typed records, serialized to `verify.json` and read back from it."""

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ErrorStats:
    """One output against its reference; `max_abs` is also the smallest absolute tolerance that would have passed."""

    shape_ok: bool
    reference_shape: list[int]
    actual_shape: list[int]
    max_abs: float | None = None
    mean_abs: float | None = None
    p99_abs: float | None = None
    psnr_db: float | None = None  # images
    cosine: float | None = None  # latent means
    kl_change_nats: float | None = None  # log-variances: mean |change of the KL term| per image
    std_ratio_error: float | None = None  # log-variances: the largest relative error of a posterior std


@dataclass
class OutputCheck:
    """One output of one artifact (or a pipeline's end-to-end reconstruction) judged against its tolerance."""

    artifact: str
    output: str
    stats: ErrorStats
    criterion: str
    passed: bool


@dataclass
class PipelineCheck:
    """An encoder and decoder of one target run end to end, in the model's own terms."""

    pipeline: str  # the target's key, e.g. tflite/int8 or onnx/float32@b1
    format: str
    mode: str
    batch: int | None
    negative_elbo: float
    elbo_increase_pct: float
    psnr_db: float
    anomaly_threshold: float
    end_to_end: OutputCheck
    criterion: str
    passed: bool
    elbo_increase_pct_per_class: dict[str, float] | None = None  # conditional models: each class judged alike
    reason: str = ""  # why it failed, in one phrase ("" when it passed)


@dataclass
class VerifyReport:
    """One runner's outputs (this machine's, an emulated CPU's) judged; `cpus` holds the reports of the other
    CPUs the bundle was verified on, by runner name (in `verify.json`, the host's report holds them)."""

    passed: bool
    inputs: dict
    tolerances: dict
    keras: dict
    outputs: list[OutputCheck]
    pipelines: list[PipelineCheck]
    runner: str = "host"
    cpu: dict | None = None  # {"cpu_class", "cpu", "vector_extensions", "emulated"}
    cpus: dict[str, "VerifyReport"] = field(default_factory=dict)
    same_rows: "VerifyReport | None" = None  # this CPU judged on the rows the other CPUs ran (fewer), beside them

    def to_json(self) -> dict:
        return asdict(self)  # recurses into the other CPUs' reports and same_rows

    @classmethod
    def from_json(cls, data: dict) -> "VerifyReport":
        def check(row: dict) -> OutputCheck:
            return OutputCheck(**{**row, "stats": ErrorStats(**row["stats"])})

        pipelines = [PipelineCheck(**{**p, "end_to_end": check(p["end_to_end"])}) for p in data["pipelines"]]
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known},
                      "outputs": [check(r) for r in data["outputs"]], "pipelines": pipelines,
                      "cpus": {name: cls.from_json(report) for name, report in data.get("cpus", {}).items()},
                      "same_rows": cls.from_json(data["same_rows"]) if data.get("same_rows") else None})
