"""The `vae-edge` group: every command registered here, one module per stage.

Commands import their heavy dependencies (Keras, TensorFlow, converters) only when they
run, so `vae-edge --help` and the runtime commands start fast. Errors a user can fix are
printed as one line: exit status 2 for bad input, 1 for a failed export or verification.
"""

import logging
import os

import click

from vae_edge.cli import bench, export, info, run, runtime, train
from vae_edge.errors import BadInputError, MissingFileError, VaeEdgeError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # and its retracing warnings from predict()


class VaeEdgeGroup(click.Group):
    """Turns package errors into one-line messages with meaningful exit codes."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VaeEdgeError as error:
            click.secho(f"Error: {error}", fg="red", err=True)
            ctx.exit(2 if isinstance(error, (BadInputError, MissingFileError)) else 1)


@click.group(cls=VaeEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
def main():
    """Train a ResNet VAE, export it for devices, verify and benchmark the exports."""


for command in (
    run.run, train.train, train.evaluate, export.export, export.verify, info.info, bench.bench,
    runtime.sample, runtime.reconstruct, runtime.score, runtime.interpolate,
):
    main.add_command(command)
