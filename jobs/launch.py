"""Multirun: an entry script's job over a sweep, through Hydra's configured launcher.

``python train_comp.py -m data=ff_a,ff_b`` or ``python train_neural.py -m model=s6,lstm``
expands the sweep (Hydra's syntax: ``key=a,b``, ``key=range(0,3)``), checks every job's
settings before anything starts (a bad key or value is one ``error:`` line, and two jobs
writing the same output folder are refused), then hands the jobs to the launcher of
``hydra/launcher`` (``cfg/``): ``joblib`` on this machine (the default), ``submitit_local``,
or ``submitit_slurm`` on a SLURM cluster. A single run (no ``-m``) is composed exactly
as before (:func:`common.cli.compose_cli`): no Hydra run folder, no change of directory.

Each job runs with the working directory unchanged (``hydra.job.chdir: false``), so
relative paths mean the same in every job; its messages go to ``job.out`` in its folder
under ``hydra.sweep.dir`` (default ``sweeps/<script>/<time>/<job number>``,
``cfg/hydra/output/sweeps.yaml``). A job's failure does not stop the others; the sweep
ends with a table of the jobs and, if any failed, one ``error:`` line naming them.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from common.cli import check_override_keys, compose_cli
from common.config import CONFIG_DIR
from common.errors import UserError

__all__ = ["MULTIRUN_FLAGS", "LaunchArgs", "JobResult", "EntryJob", "split_launch_args", "expand_sweep", "resolve_job",
           "launch", "run_entry", "launcher_name", "summarise_results", "check_results", "SweepProgress", "last_line"]

MULTIRUN_FLAGS = ("-m", "--multirun")
ROOT = CONFIG_DIR.parent
JOB_OUT = "job.out"


@dataclass
class LaunchArgs:
    """A command line split into the multirun flag, Hydra's own settings and the job's."""
    multirun: bool
    hydra: list[str] = field(default_factory=list)   # hydra/launcher=..., hydra.launcher.n_jobs=...
    job: list[str] = field(default_factory=list)     # everything else (the job's key=value)


def split_launch_args(argv: list[str]) -> LaunchArgs:
    """Separate ``-m``/``--multirun`` and the ``hydra.*`` / ``hydra/...`` overrides from the rest."""
    out = LaunchArgs(multirun=False)
    for a in argv:
        if a in MULTIRUN_FLAGS:
            out.multirun = True
        elif a.lstrip("+~").startswith(("hydra.", "hydra/")):
            out.hydra.append(a)
        else:
            out.job.append(a)
    return out


def launcher_name(hydra_overrides: list[str]) -> str:
    """The launcher a command line picks (``joblib`` unless ``hydra/launcher=...``)."""
    chosen = [o.split("=", 1)[1] for o in hydra_overrides if o.lstrip("+").startswith("hydra/launcher=")]
    return chosen[-1] if chosen else "joblib"


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Every job's overrides: the product of the sweeps (``key=a,b``), in Hydra's order.

    Returns:
        one list of ``key=value`` per job (one job when nothing is swept).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        return BasicSweeper.split_arguments(parsed, None)[0]
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"sweep: {' '.join(str(exc).split())}") from None


@dataclass
class JobResult:
    """What one job of a sweep did."""
    index: int
    overrides: list[str]
    status: int               # 0 ok, 2 bad input (UserError), 1 a bug
    error: str                # the one-line message ('' when ok)
    folder: str               # its folder under hydra.sweep.dir (job.out holds its messages)
    seconds: float = 0.0


class EntryJob:
    """The task every launcher runs: one entry script's job on one composed config.

    Picklable (joblib and submitit ship it to other processes): the job is named by
    ``"module:function"`` and imported in the worker, so this module imports no higher layer.
    """

    def __init__(self, job: str):
        self.job = job

    def __call__(self, cfg: DictConfig) -> dict:
        folder = Path(HydraConfig.get().runtime.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(folder / JOB_OUT, "w", buffering=1) as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                status, error = int(resolve_job(self.job)(_resolved(cfg)) or 0), ""
            except UserError as exc:
                status, error = 2, " ".join(str(exc).split())
            except Exception as exc:   # a bug in one job: reported, the other jobs go on
                status, error = 1, f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())})"
            if error:
                print(f"error: {error}", file=log)
        return {"status": status, "error": error, "folder": str(folder), "seconds": time.perf_counter() - t0}


def resolve_job(ref: str) -> Callable[[DictConfig], int]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _resolved(cfg: DictConfig) -> DictConfig:
    """The job's config with every interpolation resolved (``${hydra:job.num}`` included)."""
    cfg = copy.deepcopy(cfg)
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.resolve(cfg)
    return cfg


def _config_error(exc: Exception) -> UserError:
    return UserError(f"configuration: {' '.join(str(exc).split())}")


@contextlib.contextmanager
def _hydra(job_name: str):
    """Hydra initialised on ``cfg/`` (its state restored after: a single run composes as before)."""
    was = GlobalHydra.instance().is_initialized()
    if was:
        raise UserError("a multirun cannot start inside another Hydra application")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name=job_name):
        yield GlobalHydra.instance().hydra


def _job_configs(hydra, master: DictConfig, jobs: list[list[str]]) -> list[DictConfig]:
    """Each job's composed config, as its launcher will compose it (job number set)."""
    out = []
    for i, overrides in enumerate(jobs):
        try:
            cfg = hydra.config_loader.load_sweep_config(master, list(overrides))
            with read_write(cfg.hydra), open_dict(cfg.hydra):
                cfg.hydra.job.num = i
                cfg.hydra.job.id = f"check_{i}"
            HydraConfig.instance().set_config(cfg)
            plain = copy.deepcopy(cfg)
            with read_write(plain), open_dict(plain):
                del plain["hydra"]   # ${hydra:...} still resolves (HydraConfig is set)
            out.append(_resolved(plain))
        except (HydraException, OmegaConfBaseException) as exc:
            raise UserError(f"job {i} ({' '.join(overrides)}): configuration: {' '.join(str(exc).split())}") from None
    HydraConfig.instance().set_config(master)
    return out


def _check_outputs(configs: list[DictConfig], jobs: list[list[str]], output_key: str) -> None:
    """Two jobs writing one folder would overwrite each other: refused before anything runs."""
    seen: dict[str, int] = {}
    for i, cfg in enumerate(configs):
        where = os.path.normpath(str(OmegaConf.select(cfg, output_key)))
        if where in seen:
            raise UserError(f"jobs {seen[where]} and {i} both write {where} ({output_key}); give each job its own, "
                            f"e.g. {output_key}='{where}_${{hydra:job.num}}'")
        seen[where] = i


def launch(config_name: str, job: str, jobs: list[list[str]], hydra_overrides: list[str] = (),
           *, job_name: str, output_key: str, quiet: bool = False) -> list[JobResult]:
    """Run ``job`` once per override list through the launcher of ``hydra/launcher``.

    Args:
        config_name: the primary config (``cfg/<config_name>.yaml``).
        job: ``"module:function"``, called with each job's resolved config.
        jobs: one list of ``key=value`` overrides per job (:func:`expand_sweep`).
        hydra_overrides: ``hydra/launcher=...``, ``hydra.sweep.dir=...``, ``hydra.launcher.*=...``.
        job_name: Hydra's job name (``${hydra.job.name}`` in the sweep folder).
        output_key: the config key of a job's output folder (no two jobs may share one).

    Returns:
        one :class:`JobResult` per job, in order. Raises UserError before launching when
        a job's settings are wrong.
    """
    for i, overrides in enumerate(jobs):
        try:
            check_override_keys(config_name, list(overrides))
        except UserError as exc:
            raise UserError(f"job {i}: {exc}") from None
    # the workers import the task by module name, from wherever they start (submitit, SLURM)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with _hydra(job_name) as hydra:
        try:
            master = hydra.compose_config(config_name, list(hydra_overrides), run_mode=RunMode.MULTIRUN,
                                          with_log_configuration=not quiet)
        except (HydraException, OmegaConfBaseException) as exc:
            raise _config_error(exc) from None
        HydraConfig.instance().set_config(master)
        _check_outputs(_job_configs(hydra, master, jobs), jobs, output_key)
        sweep_dir = Path(str(master.hydra.sweep.dir))
        name = master.hydra.runtime.choices.get("hydra/launcher")
        if not quiet:
            print(f"launching {len(jobs)} {'job' if len(jobs) == 1 else 'jobs'} with hydra/launcher={name}; "
                  f"messages in {sweep_dir}/<job>/{JOB_OUT}", flush=True)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=_callbacks(master))
        try:
            launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=EntryJob(job),
                                                               config=master)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(master, sweep_dir / "multirun.yaml")
            folders = [sweep_dir / str(i) for i in range(len(jobs))]   # hydra.sweep.subdir: the job number
            labels = [f"#{i} {' '.join(o) or '(defaults)'}"[:60] for i, o in enumerate(jobs)]
            with SweepProgress(folders, labels, quiet=quiet):
                returns = launcher.launch([list(o) for o in jobs], initial_job_idx=0)
        except (HydraException, OmegaConfBaseException) as exc:
            raise _config_error(exc) from None
    return [_result(i, o, r, sweep_dir) for i, (o, r) in enumerate(zip(jobs, returns))]


class SweepProgress:
    """Each job's progress while a sweep runs: the last line of its ``job.out`` (its own
    progress bar or message), one line per job on the console, refreshed every ``every``
    seconds from a thread. Works wherever the jobs' folders are visible (this machine, a
    cluster's shared file system)."""

    def __init__(self, folders: list[Path], labels: list[str], every: float = 2.0, quiet: bool = False):
        self.folders, self.labels, self.every = folders, labels, every
        self.quiet = quiet or not sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = None
        self._bars = []

    def __enter__(self):
        if not self.quiet:
            from tqdm import tqdm
            self._bars = [tqdm(total=0, position=i, bar_format="{desc}", leave=False) for i in range(len(self.folders))]
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for bar in self._bars:
            bar.close()
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for bar, folder, label in zip(self._bars, self.folders, self.labels):
                bar.set_description_str(f"{label}: {last_line(folder / JOB_OUT) or 'waiting'}"[:160])


def last_line(path: Path, tail: int = 4096) -> str:
    """The last non-empty line of a log, a progress bar's ``\\r`` updates counted as lines."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(fh.seek(0, 2) - tail, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\r", "\n").split("\n")]
    return next((p for p in reversed(parts) if p), "")


def _callbacks(cfg: DictConfig):
    from hydra._internal.callbacks import Callbacks
    return Callbacks(cfg)


def _result(index: int, overrides: list[str], ret: JobReturn, sweep_dir: Path) -> JobResult:
    folder = str(sweep_dir / str(index))
    if ret.status != JobStatus.COMPLETED:   # failed outside the job (Hydra, the worker)
        exc = ret._return_value
        return JobResult(index, list(overrides), 1, f"{type(exc).__name__}: {' '.join(str(exc).split())}", folder)
    value = ret.return_value
    return JobResult(index, list(overrides), value["status"], value["error"], value["folder"], value["seconds"])


def summarise_results(results: list[JobResult]) -> str:
    """A short table: job, overrides, outcome, seconds, folder."""
    lines = []
    for r in results:
        outcome = "ok" if r.status == 0 else f"FAILED: {r.error}"
        lines.append(f"  #{r.index} {' '.join(r.overrides) or '(defaults)'}: {outcome} ({r.seconds:.1f} s; "
                     f"{Path(r.folder) / JOB_OUT})")
    return "\n".join(lines)


def check_results(results: list[JobResult]) -> None:
    """UserError naming the failed jobs (the first one's message), if any failed."""
    failed = [r for r in results if r.status != 0]
    if failed:
        first = failed[0]
        raise UserError(f"{len(failed)} of {len(results)} jobs failed; job {first.index} "
                        f"({' '.join(first.overrides) or 'defaults'}): {first.error} "
                        f"(messages in {Path(first.folder) / JOB_OUT})")


def run_entry(config_name: str, argv: list[str], doc: str, script: str, job: str, output_key: str) -> int:
    """An entry script's main: one run as before, or with ``-m`` a sweep through the launcher.

    Returns:
        the exit status (0 when every job succeeded; a failed job is a UserError).
    """
    args = split_launch_args(argv)
    if not args.multirun:
        if args.hydra:
            raise UserError(f"{args.hydra[0]}: Hydra's settings apply to a multirun; add -m "
                            f"(python {script} -m ...)")
        cfg = compose_cli(config_name, args.job, doc, script)
        return 0 if cfg is None else int(resolve_job(job)(cfg) or 0)
    if {"-h", "--help"} & set(args.job) or any(a.startswith("--cfg") for a in args.job):
        compose_cli(config_name, args.job, doc, script)
        return 0
    bad = [a for a in args.job if a.startswith("-")]
    if bad:
        raise UserError(f"unknown option {bad[0]!r}: settings are given as key=value (e.g. ckpt_dir=DIR)")
    jobs = expand_sweep(args.job)
    t0 = time.perf_counter()
    results = launch(config_name, job, jobs, args.hydra, job_name=Path(script).stem, output_key=output_key)
    print(f"\n{len(results)} jobs in {time.perf_counter() - t0:.1f} s:")
    print(summarise_results(results))
    check_results(results)
    return 0
