"""The package's own error types.

Every problem a user can fix (a bad path, a wrong shape, a tampered file) is raised as a
subclass of `VaeEdgeError`, so the command line can print it as one line instead of a
traceback, and library users can catch one type. The subclasses also derive from the
matching built-in (`ValueError`, `FileNotFoundError`) so ordinary `except` clauses work.
"""


class VaeEdgeError(Exception):
    """Base class: an error with a message that names the problem and the fix."""


class BadInputError(VaeEdgeError, ValueError):
    """An argument, array, image or file content is not what was expected."""


class MissingFileError(VaeEdgeError, FileNotFoundError):
    """A file or folder that is needed does not exist."""


class IntegrityError(BadInputError):
    """A file does not match the checksum recorded in a bundle's manifest."""


class ExportError(VaeEdgeError, RuntimeError):
    """A conversion failed (for example it would need TensorFlow-only ops)."""


class TrainingDiverged(VaeEdgeError):
    """The loss became NaN or infinite; the message says where the last good model was kept."""


class VerificationFailed(VaeEdgeError):
    """An exported artifact is numerically out of tolerance against the Keras model."""


class PartialExport(VerificationFailed):
    """Some targets failed verification; the bundle was written with the others (the message says which)."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]
