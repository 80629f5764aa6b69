"""`vae-edge verify`: every artifact of a bundle against the Keras graphs, on the same inputs.

Runners produce outputs (`reference`: Keras; `runner`: the bundle's files, TensorFlow-free, on
this CPU or an emulated one) and `comparator` judges them (with `stats` and `tolerances`) into
the typed records of `results`, rendered by `report`; `verifier` puts them together and saves
inputs and outputs in the bundle, so they can be judged again.
"""

from vae_edge.verify.results import OutputCheck, PipelineCheck, VerifyReport

__all__ = ["OutputCheck", "PipelineCheck", "VerifyReport", "rejudge", "verify_bundle"]


def __getattr__(name: str):
    if name in ("rejudge", "verify_bundle"):  # they reach Keras: reading reports and running the runner stay light
        from vae_edge.verify import verifier

        return getattr(verifier, name)
    raise AttributeError(f"module 'vae_edge.verify' has no attribute {name!r}")
