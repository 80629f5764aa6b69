"""The `vae-edge` group: every command registered here, one module per stage.

Commands import their heavy dependencies (Keras, TensorFlow, converters) only when they
run, so `vae-edge --help` and the runtime commands start fast. Errors a user can fix are
printed as one line: exit status 2 for bad input, 1 for a failed export or verification.
"""

import errno
import logging
import os
import signal

import click

from vae_edge.cli import bench, export, info, run, runtime, train
from vae_edge.errors import BadInputError, MissingFileError, VaeEdgeError
from vae_edge.registry import EXTRAS_OF_MODULES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # and its retracing warnings from predict()


BAD_PATH_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EROFS, errno.ENAMETOOLONG)


def _stop_on_sigterm(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so every staging folder is cleaned up on the way out."""
    raise KeyboardInterrupt


class VaeEdgeGroup(click.Group):
    """Turns package errors, missing extras and file-system errors into one-line messages with
    meaningful exit codes: 2 for bad input (a path, a value, a missing extra), 1 for a failure."""

    def invoke(self, ctx):
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            return super().invoke(ctx)
        except VaeEdgeError as error:
            self.fail(ctx, str(error), 2 if isinstance(error, (BadInputError, MissingFileError)) else 1)
        except ModuleNotFoundError as error:
            module = (error.name or "").partition(".")[0]
            extra = EXTRAS_OF_MODULES.get(module)
            if extra is None:
                raise
            self.fail(ctx, f"this command needs {module}, which is not installed; install it with `pip install vae-edge[{extra}]`", 2)
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            self.fail(ctx, f"cannot use{where}: {error.strerror or error}", 2 if error.errno in BAD_PATH_ERRORS else 1)

    @staticmethod
    def fail(ctx, message: str, status: int):
        click.secho(f"Error: {message}", fg="red", err=True)
        ctx.exit(status)


@click.group(cls=VaeEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
def main():
    """Train a ResNet VAE, export it for devices, verify and benchmark the exports."""


for command in (
    run.run, train.train, train.evaluate, export.export, export.verify, info.info, bench.bench,
    runtime.sample, runtime.reconstruct, runtime.score, runtime.interpolate,
):
    main.add_command(command)
