"""Which rank this process is, read from the launcher's environment, and what ties its clock to others.

Why from the environment: torchrun, `python -m torch_tensorrt.distributed.run` (torchtrtrun), mpirun
and srun all tell each process its place in variables before it starts, and `trtprof capture` runs
as the program they start; no process group is needed, and nothing is asked of the script.

Why a clock reference per rank: the timeline's times are CLOCK_MONOTONIC (`time.perf_counter_ns`),
which every process of one boot of one machine shares, so ranks on one host line up as recorded.
Across machines monotonic clocks start at each boot; the only common reference is wall-clock time
(CLOCK_REALTIME, kept in step by NTP or PTP), so each rank records a monotonic / wall-clock pair
taken back to back, with the boot id that says which machine boot its monotonic clock belongs to.
"""
from __future__ import annotations

import os
import socket
import time

from trtprof.errors import UsageError

# launcher -> (rank, world size, local rank, local world size) variables, the first one set wins.
# torchrun and torchtrtrun both set RANK / WORLD_SIZE / LOCAL_RANK (torchtrtrun no LOCAL_WORLD_SIZE).
LAUNCHERS = (
    ("torchrun", ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")),
    ("mpirun (Open MPI)", ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                           "OMPI_COMM_WORLD_LOCAL_SIZE")),
    ("mpirun (MPICH / Intel MPI)", ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")),
    ("srun (Slurm)", ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE")),
)
RUN_ID = ("TORCHELASTIC_RUN_ID", "OMPI_MCA_orte_ess_jobid", "PMIX_NAMESPACE", "SLURM_JOB_ID")
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _int(env, name: str, launcher: str, required: bool) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        if required:
            raise UsageError(f"{launcher}: {name} is not set beside the rank: cannot tell this process's place")
        return None
    try:
        value = int(raw.strip().split("(")[0])  # SLURM_NTASKS_PER_NODE may read "2(x3)"
    except ValueError:
        raise UsageError(f"{name}={raw!r} from the launcher's environment is not a number") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} from the launcher's environment is negative")
    return value


def from_environment(env=None) -> dict | None:
    """{"rank", "world_size", "local_rank", "local_world_size", "launcher", "variables", "host", "run_id"}
    for a process a launcher started, None for a plain one. A rank that is not a number, or not
    below the world size, is a UsageError (one line, exit code 2) before anything runs."""
    env = os.environ if env is None else env
    for launcher, names in LAUNCHERS:
        if env.get(names[0]) is None:
            continue
        rank = _int(env, names[0], launcher, True)
        world = _int(env, names[1], launcher, True)
        if world < 1 or rank >= world:
            raise UsageError(f"{names[0]}={rank} and {names[1]}={world} from the launcher's environment: "
                             "the rank must be below the world size")
        local = _int(env, names[2], launcher, False)
        run_id = next((env[k] for k in RUN_ID if env.get(k)), None)
        return {"rank": rank, "world_size": world, "local_rank": local,
                "local_world_size": _int(env, names[3], launcher, False), "launcher": launcher,
                "variables": list(names[:2]), "host": socket.gethostname(), "run_id": run_id}
    return None


def boot_id() -> str | None:
    """This boot of this machine (Linux): processes with the same boot id share CLOCK_MONOTONIC."""
    try:
        with open(BOOT_ID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def clock_reference(pairs: int = 9) -> dict:
    """A monotonic / wall-clock pair: of `pairs` tries (monotonic, wall, monotonic), the one with the
    shortest bracket, its wall time matched to the bracket's middle; `bracket_ns` bounds the error."""
    best = None
    for _ in range(pairs):
        a = time.perf_counter_ns()
        w = time.time_ns()
        b = time.perf_counter_ns()
        if best is None or b - a < best[2] - best[0]:
            best = (a, w, b)
    a, w, b = best
    return {"perf_counter_ns": (a + b) // 2, "time_ns": w, "bracket_ns": b - a, "boot_id": boot_id(),
            "host": socket.gethostname()}


def device() -> dict:
    """The CUDA device this rank ran on: the current device at the end of the run (where its engines
    ran, unless the script switched between devices), with the UUID that names it across processes
    whatever CUDA_VISIBLE_DEVICES each one saw."""
    out = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "index": None, "name": None,
           "uuid": None, "pci_bus_id": None}
    try:
        import torch

        if not torch.cuda.is_available():
            return out
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        out.update(index=i, name=p.name, uuid=str(getattr(p, "uuid", "")) or None)
        bus = getattr(p, "pci_bus_id", None)
        if bus is not None:
            out["pci_bus_id"] = f"{getattr(p, 'pci_domain_id', 0):04x}:{bus:02x}:{getattr(p, 'pci_device_id', 0):02x}"
    except Exception:  # noqa: BLE001 - a device we cannot describe is recorded as unknown
        pass
    return out
