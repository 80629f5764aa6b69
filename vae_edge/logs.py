"""A quiet terminal: native libraries' chatter (TensorFlow start-up, the TFLite converter's
`fully_quantize:` lines, LiteRT's "Created ... XNNPACK delegate") kept off stderr, and
onnxruntime's calibration prints off stdout, unless `VAE_EDGE_VERBOSE=1` (the CLI's
`--verbose`) asks for them.

C++ libraries write to file descriptor 2 directly, below Python's `sys.stderr`, so silencing
them means pointing that descriptor at /dev/null for the duration of the call.
"""

import contextlib
import io
import logging
import os
import sys
import threading

VERBOSE_ENV = "VAE_EDGE_VERBOSE"
_lock = threading.Lock()  # descriptor 2 is process-wide: one silenced section at a time


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_libraries() -> None:
    """Before TensorFlow loads: no C++ start-up lines, no Python-side retracing warnings."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_logger("tensorflow")
    quiet_logger("tf2onnx")


def quiet_logger(name: str) -> None:
    """Only errors from Python logger `name` (unless verbose). Call it after the library's import
    when the library sets its logger's level itself (onnxruntime's tools set DEBUG)."""
    if not verbose():
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def native_stderr_silenced():
    """Run the block with descriptor 2 on /dev/null (unless verbose); Python exceptions still propagate."""
    if verbose():
        yield
        return
    with _lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def python_stdout_silenced():
    """Run the block with Python's stdout swallowed (unless verbose): onnxruntime's quantizer `print`s
    a histogram summary per calibration."""
    if verbose():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
