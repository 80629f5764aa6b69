"""Run Python as another CPU, through qemu user-mode emulation, to check a bundle where it will run.

onnxruntime (MLAS) and LiteRT (XNNPACK) pick their integer kernels by the CPU they find, so a file
checked on this machine says nothing about a phone's Cortex-A53 or an AVX2 laptop. Under qemu the
libraries find the emulated CPU (its HWCAP bits on ARM, its CPUID on x86) and run the kernels that
CPU runs: the numerics are that CPU's, the timings mean nothing.

Each target is defined once in `TARGETS`. `prepare` sets up what it needs once, in the cache
(`$VAE_EDGE_CACHE/emulation`, default `~/.cache/vae-edge/emulation`), every folder built in a
temporary sibling and renamed when complete:

- `aarch64-sysroot/`: Debian's arm64 python3 and its libraries, fetched with apt-get into private
  state (no root, no `dpkg --add-architecture`), unpacked with `dpkg-deb -x`;
- `aarch64-site-cp3XX-...`: PyPI's aarch64 wheels of the numpy, ai-edge-litert and onnxruntime
  versions installed here, so results are comparable;
- one folder per target, which qemu's `-L` shows the process as `/` first: the target's
  `/proc/cpuinfo` (the runtimes' CPU detection reads it, and crashes on an ARM process reading the
  host's x86 one), one CPU in `/sys/devices/system/cpu`, the arm64 system (links), and a link to
  this `vae_edge`. Its manifest records what the emulated process reported when it was made.

Haswell runs this machine's own x86-64 Python under `qemu-x86_64-static -cpu Haswell`: no AVX-512.
"""

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import vae_edge
from vae_edge.cpu import CpuClass
from vae_edge.errors import BadInputError, VaeEdgeError
from vae_edge.fsutil import atomic_directory, write_json


class Arch(StrEnum):
    AARCH64 = "aarch64"
    X86_64 = "x86_64"


ARCH_NAMES = {Arch.AARCH64: "ARM64", Arch.X86_64: "x86-64"}
QEMU_PACKAGE = "qemu-user-static"  # Debian's and Ubuntu's package of the qemu-ARCH-static binaries
# What runs under emulation: the runtime's libraries, at the versions installed here.
RUNTIME_DISTRIBUTIONS = ("numpy", "ai-edge-litert", "onnxruntime")
# Debian packages of the arm64 system: the interpreter (its dependencies come along) and the C++
# and OpenMP runtimes the wheels' native libraries link against.
DEBIAN_PACKAGES = ("python3", "libstdc++6", "libgomp1")
UNNEEDED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian")
MANIFEST = "manifest.json"
DEFAULT_TIMEOUT = 1800.0  # seconds; emulated code runs many times slower than on this machine


@dataclass(frozen=True)
class CpuTarget:
    """A CPU to check on: how qemu emulates it, what /proc/cpuinfo says, the class it stands for, and
    which SIMD features numpy (reading HWCAP or CPUID, not /proc/cpuinfo) must find and must not."""

    name: str
    arch: Arch
    qemu_cpu: str  # qemu's -cpu model
    cpu_class: CpuClass
    cpuinfo: str  # planted as the process's /proc/cpuinfo
    numpy_has: frozenset[str]
    numpy_lacks: frozenset[str]
    about: str

    @property
    def qemu(self) -> str:
        """The qemu binary that emulates this architecture."""
        return f"qemu-{self.arch}-static"


def _arm_cpuinfo(features: str, variant: int, part: int, revision: int) -> str:
    """One Arm Ltd core as the arm64 Linux kernel lists it; CPU part and variant name the core (MIDR),
    which pytorch/cpuinfo (in onnxruntime and XNNPACK) reads to choose core-specific kernels."""
    return (f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: 8\nCPU variant\t: {variant:#x}\nCPU part\t: {part:#05x}\nCPU revision\t: {revision}\n\n")


# qemu's Haswell less the features its TCG cannot emulate (each would print a warning per thread);
# none of them is used by compute kernels. AVX2 and FMA under TCG need qemu 7.2 or later.
HASWELL_QEMU_CPU = "Haswell,-hle,-rtm,-pcid,-x2apic,-tsc-deadline,-invpcid"
HASWELL_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall "
                 "nx rdtscp lm pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm "
                 "abm fsgsbase bmi1 avx2 smep bmi2 erms")

TARGETS: dict[str, CpuTarget] = {target.name: target for target in (
    CpuTarget("cortex-a53", Arch.AARCH64, "cortex-a53", CpuClass.ARM64,
              _arm_cpuinfo("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", 0x0, 0xd03, 4),
              frozenset({"ASIMD"}), frozenset({"ASIMDDP", "ASIMDHP"}),
              "ARMv8.0 NEON without dot products (Raspberry Pi 3, low-end phones)"),
    CpuTarget("cortex-a76", Arch.AARCH64, "cortex-a76", CpuClass.ARM64_DOTPROD,
              _arm_cpuinfo("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                           "asimddp", 0x4, 0xd0b, 1),
              frozenset({"ASIMD", "ASIMDDP", "ASIMDHP"}), frozenset({"SVE"}),
              "ARMv8.2 with SDOT/UDOT and float16 (Raspberry Pi 5, mid-range phones)"),
    CpuTarget("haswell", Arch.X86_64, HASWELL_QEMU_CPU, CpuClass.AVX2,
              "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 60\n"
              f"model name\t: Intel Core Processor (Haswell, qemu)\nflags\t\t: {HASWELL_FLAGS}\n\n",
              frozenset({"AVX2", "FMA3"}), frozenset({"AVX512F"}),
              "x86-64 with AVX2 and FMA, no AVX-512 nor VNNI (laptops and servers before 2017)"),
)}

# Run in the emulated process when a target's folder is made: what it and its libraries find.
PROBE = """
import importlib.metadata, json, platform, time
start = time.perf_counter()
import numpy, onnxruntime, ai_edge_litert.interpreter
imported = time.perf_counter() - start
try:
    from numpy._core._multiarray_umath import __cpu_features__
except ImportError:
    from numpy.core._multiarray_umath import __cpu_features__
from vae_edge.cpu import cpu_class, cpu_identity
print(json.dumps({
    "machine": platform.machine(), "python": platform.python_version(), "cpu_class": str(cpu_class()),
    "cpu": cpu_identity(), "numpy_features": sorted(name for name, found in __cpu_features__.items() if found),
    "onnxruntime_device": onnxruntime.get_device(), "versions": {name: importlib.metadata.version(name) for name in %r},
    "import_seconds": round(imported, 2),
}))
""" % (RUNTIME_DISTRIBUTIONS,)


def target_named(target: "str | CpuTarget") -> CpuTarget:
    if isinstance(target, CpuTarget):
        return target
    if target not in TARGETS:
        raise BadInputError(f"unknown CPU target {target!r}; known: {', '.join(TARGETS)}")
    return TARGETS[target]


def cache_dir() -> Path:
    return Path(os.environ.get("VAE_EDGE_CACHE", Path.home() / ".cache" / "vae-edge")) / "emulation"


def _as_root(command: str) -> str:
    return command if os.geteuid() == 0 else f"sudo {command}"


def find_qemu(target: CpuTarget) -> Path:
    """The qemu binary of the target's architecture, or a one-line error saying how to install it."""
    found = shutil.which(target.qemu)
    if found is None:
        raise BadInputError(f"{ARCH_NAMES[target.arch]} emulation ({target.name}) needs {QEMU_PACKAGE}: "
                            f"{_as_root(f'apt-get install -y {QEMU_PACKAGE}')}")
    return Path(found)


def qemu_version(qemu: Path) -> str:
    return subprocess.run([str(qemu), "--version"], capture_output=True, text=True).stdout.partition("\n")[0].strip()


def host_versions() -> dict[str, str]:
    """The installed versions of the runtime's libraries, which the emulated ones must match."""
    try:
        return {name: importlib.metadata.version(name) for name in RUNTIME_DISTRIBUTIONS}
    except importlib.metadata.PackageNotFoundError as error:
        raise BadInputError(f"emulation runs the runtime at this machine's versions, and {error.name} is not installed; "
                            "install it with pip install 'vae-edge[runtime]'") from None


def _tool(command: Sequence, what: str, fix: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a set-up command; its failure is one line: what failed, its last message, what to do."""
    try:
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BadInputError(f"{what} took over {timeout:.0f} s; {fix}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR:"))] or lines or ["no message"]
        raise BadInputError(f"{what} failed ({errors[-1].strip()[:300]}); {fix}")
    return result


def _size(folder: Path) -> int:
    """Bytes of the files under `folder`, links not followed."""
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _apt_options(work: Path) -> list[str]:
    """apt-get with arm64 as its only architecture and private state: the host's sources, mirrors and
    proxies, but none of its installed packages, locks or package lists, so neither root nor
    `dpkg --add-architecture` is needed and the host's apt is left as it was."""
    lists, archives = work / "lists", work / "archives"
    for folder in (lists / "partial", archives / "partial"):
        folder.mkdir(parents=True)
    (work / "status").touch()
    options = {
        "APT::Architecture": "arm64", "APT::Architectures": "arm64", "Acquire::Languages": "none",
        "Dir::State": work, "Dir::State::Lists": lists, "Dir::State::status": work / "status",
        "Dir::Cache": work, "Dir::Cache::archives": archives, "Debug::NoLocking": "1",
    }
    if os.geteuid() == 0:  # apt's download user `_apt` cannot reach a private folder under /root
        options["APT::Sandbox::User"] = "root"
    return [item for key, value in options.items() for item in ("-o", f"{key}={value}")]


def _python_version(sysroot: Path) -> str:
    """"3.11" for the sysroot's usr/bin/python3.11."""
    names = [path.name for path in (sysroot / "usr" / "bin").glob("python3.*")]
    found = sorted(name[len("python"):] for name in names if re.fullmatch(r"python3\.\d+", name))
    if not found:
        raise BadInputError(f"{sysroot} has no usr/bin/python3.X; delete it and run again")
    return found[-1]


def _arm64_sysroot(log: Callable[[str], None]) -> Path:
    """Debian's arm64 python3 with its libraries, unpacked into a folder (made once)."""
    folder = cache_dir() / "aarch64-sysroot"
    if _manifest(folder) is not None:
        return folder
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise BadInputError(f"ARM64 emulation takes its Python from Debian's arm64 packages and needs {' and '.join(missing)}: "
                            f"run it on Debian, or copy {folder} from a machine that made it")
    log("ARM64 emulation: fetching Debian's arm64 python3 (once)")
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    fix = ("ARM64 emulation fetches Debian's arm64 python3 with apt-get from this machine's apt sources; check the network "
           "and that they serve arm64 (Debian's do, Ubuntu's are on ports.ubuntu.com)")
    with atomic_directory(folder, force=True) as staging:
        work = staging / ".apt"  # inside the staging folder, so an interrupted run leaves nothing behind
        apt = ["apt-get", "-q", *_apt_options(work)]
        _tool([*apt, "update"], "apt-get update (arm64)", fix)
        _tool([*apt, "install", "-y", "--download-only", "--no-install-recommends", *DEBIAN_PACKAGES],
              "apt-get download of arm64 python3", fix)
        debs = sorted((work / "archives").glob("*.deb"))
        for deb in debs:
            _tool(["dpkg-deb", "-x", deb, staging], f"unpacking {deb.name}", "delete the cache folder and run again")
        for unneeded in (".apt", *UNNEEDED):
            shutil.rmtree(staging / unneeded, ignore_errors=True)
        version = _python_version(staging)
        stdlib = staging / "usr" / "lib" / f"python{version}"
        if version == "%d.%d" % sys.version_info[:2]:  # same bytecode: compile here, in seconds, not each run under qemu
            # in a fresh process: its worker pool forks, which a process holding JAX's or TF's threads must not
            subprocess.run([sys.executable, "-m", "compileall", "-qq", "-j", "0", "-d",
                            str(folder / stdlib.relative_to(staging)), str(stdlib)], check=False)
        libc = next((re.match(r"libc6_(\d+)\.(\d+)", deb.name) for deb in debs if deb.name.startswith("libc6_")), None)
        write_json(staging / MANIFEST, {
            "packages": [deb.name for deb in debs], "python": version,
            "glibc": [int(libc.group(1)), int(libc.group(2))] if libc else [2, 17],
            "seconds": round(time.perf_counter() - start, 1),
        })
    return folder


def _arm64_wheels(sysroot: Path, log: Callable[[str], None]) -> Path:
    """PyPI's aarch64 wheels of the runtime's libraries, at the versions installed here (made once per set of versions)."""
    facts = _manifest(sysroot)
    versions = host_versions()
    tag = "cp" + facts["python"].replace(".", "")
    folder = cache_dir() / "-".join(["aarch64-site", tag, *(f"{name}{version}" for name, version in versions.items())])
    if _manifest(folder) is not None:
        return folder
    log(f"ARM64 emulation: fetching the aarch64 wheels of {', '.join(f'{n} {v}' for n, v in versions.items())} (once)")
    start = time.perf_counter()
    glibc_major, glibc_minor = facts["glibc"]
    platforms = ["manylinux2014_aarch64", *(f"manylinux_{glibc_major}_{minor}_aarch64" for minor in range(17, glibc_minor + 1))]
    pins = [f"{name}=={version}" for name, version in versions.items()]
    with atomic_directory(folder, force=True) as staging:
        _tool([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
               "--target", staging, "--only-binary=:all:", "--implementation", "cp", "--python-version", facts["python"],
               *(item for platform_tag in platforms for item in ("--platform", platform_tag)), *pins],
              "pip download of the aarch64 wheels",
              f"check the network or pip's index; they must have {', '.join(pins)} for aarch64 and Python {facts['python']}")
        write_json(staging / MANIFEST, {"requirements": pins, "python": facts["python"], "platforms": platforms,
                                        "seconds": round(time.perf_counter() - start, 1)})
    return folder


@dataclass(frozen=True)
class Environment:
    """A prepared target: the command line that runs Python as that CPU, and what it reported."""

    target: CpuTarget
    qemu: Path
    root: Path  # qemu -L: what the process sees as / first
    python: Path
    pythonpath: tuple[Path, ...]
    probe: dict  # what the emulated process and its libraries reported (`PROBE`)
    folders: tuple[Path, ...]  # what it uses in the cache
    setup_seconds: float  # what `prepare` took this time (milliseconds when everything was cached)

    @property
    def size_bytes(self) -> int:
        return sum(_size(folder) for folder in self.folders)

    def command(self, args: Sequence[str], qemu_options: Sequence[str] = ()) -> list[str]:
        return [str(self.qemu), "-cpu", self.target.qemu_cpu, "-L", str(self.root), *qemu_options, str(self.python),
                *map(str, args)]

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment less what belongs to the host's Python and libraries, with
        `vae_edge` (and on ARM the aarch64 wheels) importable, quiet, and writing no bytecode into the cache."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "LD_PRELOAD", "LD_LIBRARY_PATH")}
        env.update(PYTHONPATH=os.pathsep.join(map(str, self.pythonpath)), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.update(extra or {})
        return env

    def run(self, args: Sequence[str], *, cwd=None, env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
            qemu_options: Sequence[str] = ()) -> subprocess.CompletedProcess:
        """`python ARGS` as this CPU, output captured as text."""
        try:
            return subprocess.run(self.command(args, qemu_options), cwd=cwd, env=self.environ(env),
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VaeEdgeError(f"python {' '.join(map(str, args))[:100]} under {self.target.name} emulation took over "
                               f"{timeout:.0f} s (emulated code runs many times slower than on this machine); give it a longer "
                               "timeout") from None


def _check_probe(target: CpuTarget, probe: dict, versions: dict, qemu: str) -> None:
    """The emulated process must be the target: its class from /proc/cpuinfo, the SIMD features its
    libraries detect, and the runtime's versions."""
    found = set(probe["numpy_features"])
    problems = []
    if probe["cpu_class"] != target.cpu_class:
        problems.append(f"vae_edge.cpu finds {probe['cpu_class']}, not {target.cpu_class}")
    if target.numpy_has - found or target.numpy_lacks & found:
        problems.append(f"numpy detects {sorted(found & (target.numpy_has | target.numpy_lacks))}, expected "
                        f"{sorted(target.numpy_has)} and none of {sorted(target.numpy_lacks)} "
                        f"(a newer {QEMU_PACKAGE} may fix it)")
    if probe["versions"] != versions:
        problems.append(f"it runs {probe['versions']}, this machine {versions}")
    if problems:
        raise BadInputError(f"emulated {target.name} under {qemu} is not that CPU: {'; '.join(problems)}")


def _target_root(target: CpuTarget, qemu: Path, python: Path, pythonpath: tuple[Path, ...], sysroot: Path | None,
                 log: Callable[[str], None]) -> tuple[Path, dict]:
    """The folder qemu's -L shows as / first, made and probed once per target, qemu, interpreter and versions."""
    folder = cache_dir() / target.name
    package = Path(vae_edge.__file__).resolve().parent
    key = {"target": target.name, "qemu_cpu": target.qemu_cpu, "cpuinfo": target.cpuinfo, "qemu": str(qemu),
           "qemu_version": qemu_version(qemu), "python": str(python), "pythonpath": [str(p) for p in pythonpath],
           "sysroot": str(sysroot) if sysroot else None, "vae_edge": str(package), "versions": host_versions()}
    manifest = _manifest(folder)
    if manifest is not None and manifest["key"] == key:
        return folder, manifest["probe"]
    log(f"{target.name} emulation: checking what the emulated CPU reports (once)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(folder, force=True) as staging:
        (staging / "proc").mkdir()
        (staging / "proc" / "cpuinfo").write_text(target.cpuinfo)
        cpus = staging / "sys" / "devices" / "system" / "cpu"
        cpus.mkdir(parents=True)
        for name in ("possible", "present", "online"):
            (cpus / name).write_text("0\n")
        for entry in sorted(sysroot.iterdir()) if sysroot else ():
            if entry.name not in ("proc", "sys", MANIFEST):
                (staging / entry.name).symlink_to(Path("..") / sysroot.name / entry.name)
        (staging / "packages").mkdir()
        (staging / "packages" / "vae_edge").symlink_to(package)
        staged = Environment(target, qemu, staging, python, (staging / "packages", *pythonpath), {}, (), 0.0)
        result = staged.run(["-c", PROBE], timeout=600)
        if result.returncode != 0:
            last = [line for line in result.stderr.splitlines() if line.strip()] or [f"exit status {result.returncode}"]
            raise BadInputError(f"Python under emulated {target.name} failed ({last[-1].strip()[:300]}); "
                                f"delete {cache_dir()} and run again")
        probe = json.loads(result.stdout.strip().splitlines()[-1])
        _check_probe(target, probe, key["versions"], key["qemu_version"])
        write_json(staging / MANIFEST, {"key": key, "probe": probe})
    return folder, probe


def prepare(target: "str | CpuTarget", log: Callable[[str], None] = lambda message: None) -> Environment:
    """Everything `target` needs, set up once and cached; later calls only check the cache."""
    target = target_named(target)
    start = time.perf_counter()
    qemu = find_qemu(target)
    if target.arch == Arch.AARCH64:
        sysroot = _arm64_sysroot(log)
        site = _arm64_wheels(sysroot, log)
        python, pythonpath, folders = sysroot / "usr" / "bin" / f"python{_manifest(sysroot)['python']}", (site,), (sysroot, site)
    else:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise BadInputError(f"{target.name} emulation runs this machine's own x86-64 Python, and this machine is "
                                f"{platform.machine()}")
        sysroot, python, pythonpath, folders = None, Path(sys.executable), (), ()
    root, probe = _target_root(target, qemu, python, pythonpath, sysroot, log)
    return Environment(target, qemu, root, python, (root / "packages", *pythonpath), probe, (*folders, root),
                       time.perf_counter() - start)


def run_python(target: "str | CpuTarget", args: Sequence[str], *, cwd=None, env: Mapping[str, str] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess:
    """`python ARGS` as `target` (set up first if needed), with this `vae_edge` importable; output captured as text."""
    return prepare(target).run(args, cwd=cwd, env=env, timeout=timeout)


# ARMv8.2 dot products by (mask, value) of the instruction word: qemu 7.2's disassembler names only
# ARMv8.0 instructions and prints these as `.byte`. SDOT/UDOT (vector) and (by element), U = bit 29.
DOT_PRODUCTS = {"sdot": ((0xBFE0FC00, 0x0E809400), (0xBFC0F400, 0x0F80E000)),
                "udot": ((0xBFE0FC00, 0x2E809400), (0xBFC0F400, 0x2F80E000))}
X86_BYTE = re.compile(r"[0-9a-f]{2}")


def instruction_name(line: str, arch: Arch) -> str:
    """The mnemonic of one line of qemu's `-d in_asm` log; on x86 with the widest vector register it
    names ("vpmaddubsw ymm"), on ARM64 with dot products named from their encoding."""
    tokens = line.partition(":")[2].split()
    if arch == Arch.AARCH64:
        word = int(tokens[0], 16)
        return next((name for name, encodings in DOT_PRODUCTS.items() for mask, value in encodings if word & mask == value),
                    tokens[1] if len(tokens) > 1 else "?")
    code = [token for token in tokens if not X86_BYTE.fullmatch(token)]
    if not code:
        return "?"
    width = next((register for register in ("zmm", "ymm", "xmm") if f"%{register}" in " ".join(code[1:])), None)
    return f"{code[0]} {width}" if width else code[0]


def executed_instructions(environment: Environment, args: Sequence[str], *, cwd=None, env: Mapping[str, str] | None = None,
                          timeout: float = DEFAULT_TIMEOUT) -> tuple[subprocess.CompletedProcess, Counter]:
    """Run `python ARGS` and count the guest instructions qemu translated, by `instruction_name`:
    evidence of the kernels the libraries chose (dot products on a Cortex-A76, none on an A53; AVX2's
    ymm and no zmm under Haswell). Each block of code counts once, when first translated, not per
    execution. qemu's log of one model run is 50 to 100 MB, read as it is written and then deleted."""
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="vae-edge-trace.") as work:
        trace = Path(work) / "in_asm.log"
        result = environment.run(args, cwd=cwd, env=env, timeout=timeout, qemu_options=("-d", "in_asm", "-D", str(trace)))
        with open(trace, errors="replace") as lines:
            counts.update(instruction_name(line, environment.target.arch) for line in lines if line.startswith("0x"))
    return result, counts
