"""Several processes as one job: the launch checked, one voice, and no worker outliving its launcher.

A launcher says how many processes it started (torchrun's `WORLD_SIZE`, MPI's sizes) or was asked for
(`accelerate launch --num_processes N`, or its config: with `--cpu` it still runs ONE process). accelerate's
state says how many form the process group. When the two differ, every rank would train alone and race the
others for the run folder: the job stops first with one line naming the command that works.

A worker of `accelerate launch` / torchrun sits in its own process group: a `kill -9` of the launcher leaves it
running under PID 1. `LauncherWatch` notices the new parent within a fraction of a second and stops the worker
the way Ctrl-C does (checkpoint saves and locks clean up as they unwind); SIGTERM, which torchrun sends the
other workers when one dies, stops it the same way. A peer that dies without its launcher noticing (another
machine) ends the collective waiting for it with an error (gloo) or at the process group's timeout (NCCL).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from .errors import SharedError

# the variables accelerate's state reads a world size and a rank from (torchrun, then MPI flavours); a
# launcher sets both of a pair in every process it starts (a job script may export a world size for later)
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _int_env(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def env_rank() -> int:
    """This process's global rank as its launcher set it (0 without a launcher)."""
    return _int_env(RANK_VARS) or 0


def is_main_by_env() -> bool:
    return env_rank() == 0


@dataclass
class Launch:
    """How many processes the launcher started or was asked for, and how that is known."""

    processes: int
    source: str  # where the number comes from: "WORLD_SIZE=2", "accelerate launch: --num_processes or its config"
    single_process_launcher: bool = False  # accelerate's simple launcher: N asked for, one started


def _parent_args() -> list[str]:
    try:
        import psutil

        return psutil.Process(os.getppid()).cmdline()
    except Exception:  # no parent to read (gone, another user's, no /proc): nothing asked for
        return []


def _flag_value(args: list[str], *flags: str) -> str | None:
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def _is_accelerate_launch(args: list[str], i: int) -> bool:
    """`accelerate launch` (the console script, then its subcommand) or `python -m accelerate.commands.launch`."""
    if args[i] == "launch":
        return i > 0 and os.path.basename(args[i - 1]) == "accelerate"
    return args[i] == "accelerate.commands.launch"


def _accelerate_launch_at(args: list[str]) -> int | None:
    return next((i for i in range(len(args)) if _is_accelerate_launch(args, i)), None)


def under_launcher() -> bool:
    """Started by torchrun (its workers have LOCAL_RANK) or by `accelerate launch` (the parent process)."""
    return "LOCAL_RANK" in os.environ or _accelerate_launch_at(_parent_args()) is not None


def accelerate_launch_request(args: list[str]) -> int | None:
    """`--num_processes` of an `accelerate launch` command line (None when `args` is not one, or sets none)."""
    start = _accelerate_launch_at(args)
    if start is None:
        return None
    flags = args[start + 1 :]
    script_at = next((i for i, a in enumerate(flags) if a.endswith(".py") or a == "-m"), len(flags))
    flags = flags[:script_at]
    value = _flag_value(flags, "--num_processes", "--num-processes")
    if value is None:
        return _config_processes(_flag_value(flags, "--config_file", "--config-file"), cpu="--cpu" in flags)
    return int(value) if value.isdigit() else None


def _config_processes(path: str | None, cpu: bool) -> int | None:
    """`num_processes` of the accelerate config the launcher read: `--config_file`, else the default one
    (which accelerate skips under `--cpu`)."""
    from accelerate.commands.config import default_config_file
    from accelerate.commands.config.config_args import load_config_from_file

    if path is None and (cpu or not os.path.isfile(default_config_file)):
        return None
    try:
        return int(load_config_from_file(path).num_processes)
    except Exception:  # unreadable: the launcher itself says so
        return None


def launched() -> Launch:
    """What the launcher of this process started, or asked for when it started only this one."""
    for size_var, rank_var in zip(WORLD_SIZE_VARS, RANK_VARS, strict=True):
        size = _int_env((size_var,))
        if size is not None and _int_env((rank_var,)) is not None:
            return Launch(size, f"{size_var}={size}")
    asked = accelerate_launch_request(_parent_args())
    if asked is not None and asked > 1:
        return Launch(asked, "accelerate launch: --num_processes or its config", single_process_launcher=True)
    return Launch(1, "no launcher")


def _program() -> str:
    """The script and arguments of this process as a launcher takes them."""
    script = sys.argv[0]
    if script.endswith("__main__.py"):
        script = "-m " + os.path.basename(os.path.dirname(script))
    return shlex.join([*shlex.split(script), *sys.argv[1:]]) if sys.argv else "SCRIPT ..."


def cpu_forced() -> bool:
    """ACCELERATE_USE_CPU as accelerate reads it (the `--cpu` launch, or the `--multi_gpu` form on CPU)."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU")


def process_state() -> Any:
    """The launch's processes, seen as an Accelerator will see them: accelerate reads ACCELERATE_USE_CPU only when
    an Accelerator is built, and a PartialState made first without it leaves every rank alone."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_forced())


def check_launch(process_group_size: int, cuda_available: bool) -> None:
    """One line (from the main process; every rank stops) when the launch asked for more processes than form
    the process group: each would train alone."""
    launch = launched()
    if launch.processes <= process_group_size:
        return
    if launch.single_process_launcher:
        why = "accelerate's single-process launcher ran (as it does for --cpu, or without --multi_gpu), so one started"
    elif not cuda_available and not cpu_forced():
        why = "--multi_gpu needs CUDA GPUs and this machine has none, so each process runs alone"
    else:
        why = f"accelerate's process group holds {process_group_size}, so each process would run alone"
    fix = f"accelerate launch --multi_gpu --num_processes {launch.processes} {_program()}"
    if not cuda_available:
        fix = "ACCELERATE_USE_CPU=1 " + fix
    raise SharedError(
        f"the launch asked for {launch.processes} processes ({launch.source}) but {why}; run: {fix}",
        main=is_main_by_env(),
    )


def check_one_process(command: str) -> None:
    """Commands that are not data parallel stop when launched as several processes (they would race to write)."""
    launch = launched()
    if launch.processes > 1:
        raise SharedError(
            f"{command} runs in one process ({launch.source} asked for {launch.processes}); run it without "
            "accelerate launch / torchrun, or with --num_processes 1",
            main=is_main_by_env(),
        )


def quiet_unless_main() -> None:
    """One voice: a process other than the main one prints nothing but its errors (no stdout, no warnings,
    logging at ERROR and above). Called by the command-line entry points, before any work."""
    if is_main_by_env():
        return
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


class Stopped(KeyboardInterrupt):
    """The worker was told to stop (SIGTERM) or lost its launcher: unwind as Ctrl-C does."""


class LauncherWatch:
    """Stop this worker when its launcher is gone (its parent PID changed) or on SIGTERM.

    A thread checks the parent every `interval` seconds and sends the main thread SIGTERM, whose handler raises
    `Stopped`: the run unwinds through every cleanup (temporary checkpoint folders, the output lock). A main
    thread blocked in a collective whose peer is gone cannot take it: `grace` seconds later the process exits.
    Active only under a launcher (`under_launcher`); a plain `python train.py` keeps running when its shell
    goes (nohup).
    """

    def __init__(
        self,
        interval: float = 0.25,
        grace: float = 20.0,
        rerun: str = "rerun the same command with --resume auto to continue from the last checkpoint",
    ) -> None:
        self.interval, self.grace, self.rerun = interval, grace, rerun
        self.parent = os.getppid()
        self.active = under_launcher()
        self._done = threading.Event()
        self._previous = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LauncherWatch:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers belong to the main thread: a run in another thread is not watched
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.active:
            self._thread = threading.Thread(target=self._watch, name="launcher-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one (torchrun repeats it) must not cut the cleanup
        last_resort = threading.Timer(self.grace, os._exit, args=(143,))  # for a main thread that cannot unwind
        last_resort.daemon = True
        last_resort.start()
        raise Stopped(f"stopped by SIGTERM (rank {env_rank()})")

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if os.getppid() != self.parent:
                if is_main_by_env():
                    gone = f"the launcher (PID {self.parent}) is gone: stopping; {self.rerun}"
                    print(gone, file=sys.stderr, flush=True)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # wakes a blocking call too
                return
