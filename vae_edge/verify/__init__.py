"""`vae-edge verify`: every artifact of a bundle against the Keras model, on the same inputs.

`verifier` runs the artifacts (the runners) and `stats`/`tolerances` compare and judge
(the comparator); results are the typed records of `results`, rendered by `report`.
"""

from vae_edge.verify.results import OutputCheck, PipelineCheck, VerifyReport
from vae_edge.verify.verifier import verify_bundle

__all__ = ["OutputCheck", "PipelineCheck", "VerifyReport", "verify_bundle"]
