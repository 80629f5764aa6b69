"""Several processes or hosts training one model with JAX: joining them, and who is who.

Keras' own KERAS_DISTRIBUTION_* variables are the defaults of the CLI's options; see
docs/multi-host.md.
"""

import os
import socket
import time
from dataclasses import dataclass

from vae_edge.errors import BadInputError
from vae_edge.train.backend import Backend, loaded_backend, requested_backend

# Keras' own variables for a multi-host run (keras.distribution.initialize reads the same ones):
# the defaults of `vae-edge train --coordinator/--num-processes/--process-id`. The first job
# address is the coordinator's, process 0's.
MULTI_HOST_ENV = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES_ENV = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID_ENV = "KERAS_DISTRIBUTION_PROCESS_ID"
# Seconds a process waits for the others to join before it gives up (JAX's default is 300).
JOIN_TIMEOUT_S = 300


@dataclass(frozen=True)
class Hosts:
    """This process's place in a multi-process (multi-host) JAX run."""

    coordinator: str  # HOST:PORT where process 0 listens and every process connects
    num_processes: int
    process_id: int  # 0 .. num_processes - 1; 0 writes the run folder


def hosts_from(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               environ: dict | None = None) -> Hosts | None:
    """The multi-host settings: the arguments, else Keras' KERAS_DISTRIBUTION_* variables; None for one process.

    All three are needed together; a partial or inconsistent set is a one-line error rather
    than a run that hangs waiting for processes that will never come.
    """
    environ = os.environ if environ is None else environ
    if coordinator is None and environ.get(MULTI_HOST_ENV):
        coordinator = environ[MULTI_HOST_ENV].split(",")[0].strip()
    try:
        if num_processes is None and environ.get(NUM_PROCESSES_ENV):
            num_processes = int(environ[NUM_PROCESSES_ENV])
        if process_id is None and environ.get(PROCESS_ID_ENV):
            process_id = int(environ[PROCESS_ID_ENV])
    except ValueError:
        raise BadInputError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be whole numbers, got "
                            f"{environ.get(NUM_PROCESSES_ENV)!r} and {environ.get(PROCESS_ID_ENV)!r}") from None
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(value is None for value in given.values()):
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise BadInputError(f"a multi-host run needs --coordinator, --num-processes and --process-id together "
                            f"(or {MULTI_HOST_ENV}, {NUM_PROCESSES_ENV}, {PROCESS_ID_ENV}); missing {', '.join(missing)}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInputError(f"--coordinator {coordinator!r} is not HOST:PORT (process 0's address and a free port)")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise BadInputError(f"--process-id {process_id} is not in 0..{num_processes - 1} (--num-processes {num_processes})")
    return None if num_processes == 1 else Hosts(coordinator, num_processes, process_id)


def join_hosts(hosts: Hosts, timeout_s: int = JOIN_TIMEOUT_S) -> None:
    """Connect this process to the others of a multi-host JAX run; a no-op once joined.

    Must run before JAX computes anything (jax.distributed.initialize refuses afterwards),
    so the CLI calls it right after choosing the backend. On CPUs, cross-process collectives
    go over gloo (TCP); JAX 0.10 defaults to it, set here so an older default cannot silently
    leave processes that cannot all-reduce. The other processes first wait for process 0's
    coordinator to listen: JAX itself aborts the whole process with a native stack trace when
    it cannot reach it, which is no way to say "start process 0 first".
    """
    if (loaded_backend() or requested_backend()) != Backend.JAX:
        raise BadInputError(f"a multi-host run (--coordinator, --num-processes {hosts.num_processes}) needs --backend jax")
    import jax

    if jax.distributed.is_initialized():
        return
    if hosts.process_id != 0:
        wait_for_coordinator(hosts.coordinator, timeout_s)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=hosts.coordinator, num_processes=hosts.num_processes,
                                   process_id=hosts.process_id, initialization_timeout=timeout_s)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInputError(f"process {hosts.process_id} of {hosts.num_processes} could not join the run at "
                            f"{hosts.coordinator}: {first}") from None


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Return once something accepts TCP connections at `address` (HOST:PORT); a one-line error after `timeout_s`."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise BadInputError(f"nothing answered at --coordinator {address} within {timeout_s:g} s "
                                    f"({error.strerror or error}); start process 0 with the same --coordinator, "
                                    "or check its address and port") from None
            time.sleep(0.5)


def process_index_and_count() -> tuple[int, int]:
    """(this process's index, the process count): (0, 1) unless this is a multi-host JAX run."""
    import keras

    if keras.backend.backend() != Backend.JAX:
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()

