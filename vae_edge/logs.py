"""A quiet terminal: native libraries' chatter (TensorFlow start-up, the TFLite converter's
`fully_quantize:` lines, LiteRT's "Created ... XNNPACK delegate") kept off stderr, and
onnxruntime's calibration prints off stdout, unless `VAE_EDGE_VERBOSE=1` (the CLI's
`--verbose`) asks for them.

C++ libraries write to file descriptor 2 directly, below Python's `sys.stderr`, so silencing
them means pointing that descriptor at /dev/null for the duration of the call.

TensorFlow's own level, `TF_CPP_MIN_LOG_LEVEL`, cannot hide everything: since TensorFlow logs
through Abseil, a static object's constructor (TSL's `LoggingInitializer`) hands the level to
Abseil when the library is loaded, but other constructors that run before it in the same
library already log. On CPUs where TensorFlow turns oneDNN on by default (AVX-512 VNNI, AMX;
anywhere with `TF_ENABLE_ONEDNN_OPTS=1`), `IsMklEnabled()` logs "oneDNN custom operations are
on" from such a constructor, and Abseil's "All log messages before absl::InitializeLog() is
called are written to STDERR" comes with it, once per library that carries its own copy of
both (in TensorFlow 2.21: libtensorflow_framework and the profiler's _pywrap_profiler_plugin).
No variable reaches Abseil earlier, so the first import of TensorFlow itself runs
with descriptor 2 silenced (`quiet_libraries`), which leaves oneDNN, and its numerics, as they are.
"""

import contextlib
import importlib.abc
import io
import logging
import os
import sys
import threading

VERBOSE_ENV = "VAE_EDGE_VERBOSE"
# Descriptor 2 is process-wide: one silenced section at a time. Re-entrant: TensorFlow's first
# import (silenced) may happen inside another silenced section, a converter's or an engine's.
_lock = threading.RLock()
QUIET_LOGGERS = ("tensorflow", "tf2onnx")
QUIET_IMPORTS = ("tensorflow",)  # packages whose loading logs before their own log level applies


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_libraries() -> None:
    """Before TensorFlow loads: no C++ start-up lines (TensorFlow's level, and its first import
    silenced), no Python-side retracing warnings.

    Call it first thing in every process of ours that may import TensorFlow (the CLI, a bench
    worker, a training child); child processes inherit the level, not the import hook.
    """
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in QUIET_LOGGERS:
        quiet_logger(name)
    if not libraries_quieted():
        sys.meta_path.insert(0, _SilencedFirstImport())


def libraries_quieted() -> bool:
    """Whether `quiet_libraries` set this process up (so a child process of ours should be too)."""
    return any(isinstance(finder, _SilencedFirstImport) for finder in sys.meta_path)


def loud_libraries() -> None:
    """`--verbose`: the native logs back (here and in child processes), whatever `quiet_libraries` set."""
    os.environ[VERBOSE_ENV] = "1"  # child processes (bench workers, training children) inherit it
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    # the import hook reads verbose() when TensorFlow loads, so it stays in place and silences nothing


class _SilencedFirstImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when a package of QUIET_IMPORTS is about to load, wraps its loader so
    that loading it (its native libraries' constructors included) runs in `native_stderr_silenced`."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in QUIET_IMPORTS:
            return None
        others = (finder for finder in sys.meta_path if finder is not self and hasattr(finder, "find_spec"))
        spec = next((spec for finder in others if (spec := finder.find_spec(fullname, path, target))), None)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_silenced(module):
                with native_stderr_silenced():
                    exec_module(module)

            spec.loader.exec_module = exec_silenced
        return spec


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
