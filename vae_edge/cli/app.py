"""The `vae-edge` group: every command registered here, one module per stage.

Commands import their heavy dependencies (Keras, TensorFlow, converters) only when they
run, so `vae-edge --help` and the runtime commands start fast. Errors a user can fix are
printed as one line: exit status 2 for bad input, 1 for a failed export or verification.
"""

import errno
import signal
import sys

import click

from vae_edge.cli import bench, export, info, run, runtime, serve, train
from vae_edge.errors import BadInputError, MissingFileError, VaeEdgeError
from vae_edge.logs import loud_libraries, quiet_libraries
from vae_edge.registry import install_hint

quiet_libraries()


BAD_PATH_ERRORS = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EROFS, errno.ENAMETOOLONG)


def _stop_on_sigterm(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so every staging folder is cleaned up on the way out."""
    raise KeyboardInterrupt


class VaeEdgeGroup(click.Group):
    """Turns package errors, missing extras and file-system errors into one-line messages with
    meaningful exit codes: 2 for bad input (a path, a value, a missing extra), 1 for a failure."""

    # What to do about a file-system error, after what it is.
    FIXES = {
        errno.ENOENT: "check the path (an output's folder is made only below one that exists)",
        errno.EACCES: "choose a path you may use, or change its permissions",
        errno.EPERM: "choose a path you may use, or change its permissions",
        errno.EROFS: "choose a path on a writable disk",
        errno.EISDIR: "name a file, not a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENAMETOOLONG: "choose a shorter name",
        errno.ENOSPC: "free some space or choose another disk",
        errno.EDQUOT: "free some space or choose another disk",
    }

    def invoke(self, ctx):
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            return super().invoke(ctx)
        except VaeEdgeError as error:
            self.fail(ctx, str(error), 2 if isinstance(error, (BadInputError, MissingFileError)) else 1)
        except ModuleNotFoundError as error:
            module = (error.name or "").partition(".")[0]
            if module in ("", "vae_edge"):
                raise  # a bug in this package, not the install
            hint = install_hint(module)
            fix = f"install it with {hint}" if hint else "the install is incomplete; reinstall vae-edge with the extras you use"
            self.fail(ctx, f"this command needs {module}, which is not installed; {fix}", 2)
        except OSError as error:
            where = f" {error.filename}" if error.filename else ""
            fix = f"; {self.FIXES[error.errno]}" if error.errno in self.FIXES else ""
            self.fail(ctx, f"cannot use{where}: {error.strerror or error}{fix}", 2 if error.errno in BAD_PATH_ERRORS else 1)

    @classmethod
    def fail(cls, ctx, message: str, status: int):
        cls.fail_line(message)
        ctx.exit(status)

    @staticmethod
    def fail_line(message: str) -> None:
        """One red line: control characters (from a file name, a file's content) escaped, never raw."""
        from vae_edge.printable import printable

        click.secho(f"Error: {printable(message)}", fg="red", err=True)

    def main(self, args=None, prog_name=None, standalone_mode=True, **extra):
        """Click's usage errors as one line too (the problem and where the help is), exit status 2."""
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0  # ctx.exit(N) comes back as N
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else "vae-edge"
            self.fail_line(f"{error.format_message()} (see `{command} --help`)")
            code = error.exit_code
        except click.ClickException as error:
            self.fail_line(error.format_message())
            code = error.exit_code
        except click.Abort:
            click.secho("Aborted.", fg="red", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _verbose(ctx, param, value):
    if value:
        loud_libraries()


@click.group(cls=VaeEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vae-edge")
@click.option(
    "--verbose",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_verbose,
    help="Show the native libraries' logs (TensorFlow, converters, LiteRT) that are hidden by default.",
)
def main():
    """Train a ResNet VAE, export it for devices, verify and benchmark the exports."""


for command in (
    run.run,
    train.train,
    train.evaluate,
    export.export,
    export.verify,
    info.info,
    bench.bench,
    runtime.sample,
    runtime.reconstruct,
    runtime.score,
    runtime.interpolate,
    serve.serve,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
