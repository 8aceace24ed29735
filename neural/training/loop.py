"""The training loop: Adam on random segments, validation, early stopping, checkpoints, resume.

One step: the batch of step ``k`` (:class:`neural.training.data.SegmentSampler`, a function of
``(seed, k)``), the loss on its scored part (:mod:`neural.training.losses`), Adam with gradient
clipping. Every ``val_every`` steps: the validation ESR (pre-emphasised, pooled per
setting, averaged over settings, as the test table), ``log.csv`` rewritten, ``last.pt``
written, and ``best.pt`` when the validation ESR improved. The learning rate halves
after ``plateau`` validations without improvement; training stops after ``patience``
of them or at ``max_steps``: its length is a step count, the same for a seed whatever
the machine's load. ``max_minutes`` of training (summed over resumed runs) is only a
safety cap; :attr:`TrainState.stopped` says so when it binds.

Resuming: ``last.pt`` holds the weights, the optimiser, the step, the time spent, the
early-stopping state and the log; since batches depend only on the step, a resumed run
continues as the uninterrupted one would have. An interrupt (Ctrl-C, SIGINT) or a
SIGTERM lets the step in progress finish, writes ``last.pt`` at that step boundary (all
of step ``k`` or nothing of it: weights, optimiser, carried state and step agree) and
ends the run with KeyboardInterrupt; resuming from it is exact.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from common.errors import UserError
from common.records import write_csv
from common.tracking import NULL_TRACKER, Tracker
from dsp.models.preemphasis import preemphasis
from neural.backbones import detach_state
from neural.checkpoint import save_checkpoint
from neural.training.data import Batch, SegmentSampler
from neural.inference import run_chunked
from neural.training.losses import HybridLoss

__all__ = ["TrainSettings", "TrainState", "LOG_COLUMNS", "train", "validate"]

LOG_COLUMNS = ["step", "seconds", "lr", "train_loss", "train_esr", "train_stft", "val_esr", "val_esr_dsp", "best"]


@dataclass
class TrainSettings:
    """The training settings.

    The model files (``cfg/model/<model>.yaml``, section ``train``) are where they are
    set; the defaults here are the base model file's (``cfg/model/base.yaml``) so that a
    setting a model file leaves out means the same in every model. ``max_minutes``
    (``cfg/train_neural.yaml``) is in no model file.
    """

    lr: float = 3e-3
    batch_size: int = 16          # streams
    warmup_s: float = 1.0         # unscored start of every stream (episode)
    segment_s: float = 1.0        # samples per step and stream
    episode: int = 10             # consecutive segments per stream (state carried over)
    max_steps: int = 1500
    max_minutes: float = 120.0    # safety cap on the training time (validation included)
    val_every: int = 100
    patience: int = 15            # validations without improvement before stopping
    plateau: int = 3              # ... before halving the learning rate
    lr_min: float = 1e-4
    schedule: str = "cosine"      # cosine: lr -> lr_min over max_steps; plateau: halve on no improvement
    grad_clip: float = 1.0
    weight_decay: float = 0.0     # decoupled (AdamW) decay per unit lr; 0: plain Adam
    esr_weight: float = 1.0
    stft_weight: float = 0.0
    val_seconds: float = 8.0      # validation: the first seconds of every Val pair
    val_warmup_s: float = 0.0     # ... of which this much is not scored

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSettings":
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"train: unknown setting {unknown[0]!r} (known: {', '.join(known)})")
        out = cls()
        for k, v in values.items():
            if v is None:
                continue
            default = getattr(out, k)
            try:
                setattr(out, k, type(default)(v))
            except (TypeError, ValueError):
                raise UserError(f"train.{k}: expected a {type(default).__name__}, got {v!r}") from None
        out.check()
        return out

    def check(self) -> None:
        positive = ["lr", "batch_size", "segment_s", "episode", "max_steps", "max_minutes", "val_every", "patience",
                    "plateau", "val_seconds"]
        bad = [k for k in positive if not getattr(self, k) > 0]
        bad += [k for k in ("warmup_s", "val_warmup_s", "grad_clip", "weight_decay", "esr_weight", "stft_weight",
                            "lr_min")
                if not getattr(self, k) >= 0]
        if bad:
            raise UserError(f"train.{bad[0]} = {getattr(self, bad[0])!r} is out of range")
        if self.schedule not in SCHEDULES:
            raise UserError(f"train.schedule = {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        if self.esr_weight == 0 and self.stft_weight == 0:
            raise UserError("train.esr_weight and train.stft_weight are both 0: nothing to learn from")


SCHEDULES = ("plateau", "cosine")


def cosine_lr(settings: TrainSettings, step: int) -> float:
    """The cosine schedule's learning rate at ``step``: ``lr`` at 0, ``lr_min`` at ``max_steps``
    (a function of the step alone, so a resumed run follows it exactly)."""
    frac = min(step / settings.max_steps, 1.0)
    return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (1.0 + math.cos(math.pi * frac))


@dataclass
class TrainState:
    step: int = 0
    seconds: float = 0.0
    lr: float = 0.0
    best_val: float = math.inf
    best_step: int = -1
    bad: int = 0                  # validations since the last improvement
    since_lr: int = 0             # validations since the last improvement or lr cut
    log: list = field(default_factory=list)
    sums: dict = field(default_factory=lambda: {"loss": 0.0, "esr": 0.0, "stft": 0.0, "n": 0})
    stopped: str = ""

    def done(self, s: TrainSettings) -> str:
        if self.bad >= s.patience:
            return f"early stop: no improvement in {s.patience} validations"
        if self.step >= s.max_steps:
            return f"max_steps {s.max_steps} reached"
        if self.seconds >= s.max_minutes * 60:
            return (f"stopped by the time cap of {s.max_minutes:g} min at step {self.step} "
                    f"(train.max_steps {s.max_steps} not reached)")
        return ""


def _to(tree, device):
    """A nested tuple of tensors moved to ``device`` (None stays None)."""
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    return tuple(_to(t, device) for t in tree)


def _level_esr(pred: torch.Tensor, batch: Batch) -> float:
    """Mean over settings of the ESR pooled over each setting's rows (scored part only)."""
    p = preemphasis(pred.double())[:, batch.warmup:]
    t = preemphasis(batch.y.double())[:, batch.warmup:]
    err, energy = (p - t).square().sum(1), t.square().sum(1)
    sums: dict = {}
    for i, level in enumerate(batch.levels):
        acc = sums.setdefault(level, [0.0, 0.0])
        acc[0] += float(err[i])
        acc[1] += float(energy[i])
    return sum(e / max(en, 1e-30) for e, en in sums.values()) / len(sums)


@torch.no_grad()
def validate(model, batch: Batch, rows: int = 8) -> float:
    """Validation ESR of ``model`` on a fixed batch (in groups of ``rows``, chunked in time)."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, batch.x.shape[0], rows):
        sl = slice(i, i + rows)
        y, _ = run_chunked(model, batch.x[sl], batch.y_dsp[sl], batch.g_db[sl], batch.cond[sl])
        outs.append(y)
    model.train(was_training)
    return _level_esr(torch.cat(outs), batch)


class _StopRequest:
    """Set by SIGINT or SIGTERM; the loop looks at it between steps."""

    def __init__(self):
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def _stop_on_signals():
    """While training, SIGINT and SIGTERM only ask the loop to stop at the next step boundary
    (handlers can only be set in the main thread; elsewhere none is set, and an interrupt
    there leaves last.pt as the last validation wrote it)."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask(signum, frame):
        stop.signal = signum

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _save(path: Path, record: dict, model, state: TrainState, extra: Optional[dict] = None) -> None:
    metrics = {"step": state.step, "seconds": state.seconds, "best_val_esr": state.best_val,
               "best_step": state.best_step}
    save_checkpoint(path, {**record, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                           "metrics": metrics, **(extra or {})})


def train(model, sampler: SegmentSampler, val_batch: Batch, settings: TrainSettings, out_dir: Path,
          record: dict, device: str = "cpu", resume: Optional[dict] = None, quiet: bool = False,
          tracker: Tracker = NULL_TRACKER) -> TrainState:
    """Train ``model`` in place; writes ``best.pt``, ``last.pt`` and ``log.csv`` in ``out_dir``.

    Args:
        record: the checkpoint skeleton (model spec, variant, knob map, config, levels).
        resume: the ``resume`` entry of a previous ``last.pt`` (its weights already
            loaded into ``model``), or None for a fresh start.
        tracker: gets every validation's row of ``log.csv`` as scalars (``logger=tensorboard``).

    Returns:
        the final :class:`TrainState` (``stopped`` says why it stopped).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device).train()
    criterion = HybridLoss(settings.esr_weight, settings.stft_weight).to(device)
    # decoupled decay (AdamW's); with weight_decay 0 it is plain Adam, step for step
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                           decoupled_weight_decay=True)
    state = TrainState(lr=settings.lr)
    carried = None  # the model state at the end of the last batch (truncated BPTT)
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        state = TrainState(**resume["state"])
        carried = _to(resume.get("carried"), device)
    for g in opt.param_groups:
        g["lr"] = state.lr
    val_batch = val_batch.to(device)
    val_dsp = _level_esr(val_batch.y_dsp, val_batch)  # the DSP model's, for reference (any variant)

    def save_last():
        _save(out_dir / "last.pt", record, model, state,
              {"resume": {"optimizer": opt.state_dict(), "state": asdict(state), "carried": _to(carried, "cpu")}})

    def validation():
        s = state.sums
        n = max(s["n"], 1)
        val = validate(model, val_batch)
        improved = val < state.best_val
        if improved:
            state.best_val, state.best_step, state.bad, state.since_lr = val, state.step, 0, 0
            _save(out_dir / "best.pt", record, model, state)
        else:
            state.bad += 1
            state.since_lr += 1
            if settings.schedule == "plateau" and state.since_lr >= settings.plateau and state.lr > settings.lr_min:
                state.lr = max(state.lr * 0.5, settings.lr_min)
                state.since_lr = 0
                for g in opt.param_groups:
                    g["lr"] = state.lr
        state.log.append({"step": state.step, "seconds": state.seconds, "lr": opt.param_groups[0]["lr"],
                          "train_loss": s["loss"] / n if s["n"] else "", "train_esr": s["esr"] / n if s["n"] else "",
                          "train_stft": s["stft"] / n if s["n"] else "", "val_esr": val, "val_esr_dsp": val_dsp,
                          "best": int(improved)})
        state.sums = {"loss": 0.0, "esr": 0.0, "stft": 0.0, "n": 0}
        write_csv(out_dir / "log.csv", state.log, LOG_COLUMNS)
        row = state.log[-1]
        tracker.scalars(state.step, {"train/loss": row["train_loss"], "train/esr": row["train_esr"],
                                     "train/stft": row["train_stft"], "train/lr": row["lr"],
                                     "val/esr": val, "val/esr_dsp": val_dsp})
        tracker.flush()
        save_last()
        return val

    # the bar counts steps, the unit the run is budgeted in (the time cap is only a safety net)
    bar = tqdm(total=settings.max_steps, initial=min(state.step, settings.max_steps), unit="step", desc="train",
               disable=quiet, dynamic_ncols=True)
    if state.step == 0 and not state.log:  # the starting point: the DSP model itself for a hybrid
        t0 = time.perf_counter()
        validation()
        state.seconds += time.perf_counter() - t0
    with _stop_on_signals() as stop:
        while not stop and not (reason := state.done(settings)):
            t0 = time.perf_counter()
            if settings.schedule == "cosine":
                state.lr = cosine_lr(settings, state.step)
                for g in opt.param_groups:
                    g["lr"] = state.lr
            batch = sampler.batch(state.step).to(device)
            pred, carried = model.process(batch.x, batch.y_dsp, batch.g_db, batch.cond,
                                          None if batch.fresh else carried)
            carried = detach_state(carried)
            loss, parts = criterion(pred, batch.y, batch.warmup)
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                opt.step()
                s = state.sums
                s["loss"] += float(loss.detach())
                s["esr"] += float(parts["esr"])
                s["stft"] += float(parts.get("stft", 0.0))
                s["n"] += 1
            state.step += 1
            if state.step % settings.val_every == 0:
                validation()
            state.seconds += time.perf_counter() - t0
            bar.update(1)
            last = state.log[-1]
            bar.set_postfix_str(f"step {state.step} val ESR {last['val_esr']:.4f} best {state.best_val:.4f} "
                                f"(DSP {val_dsp:.4f})", refresh=False)
        if stop:  # a signal: last.pt at this step boundary, then end as an interrupt
            save_last()
            bar.close()
            raise KeyboardInterrupt
        if state.log[-1]["step"] != state.step:
            validation()
    bar.close()
    state.stopped = reason
    save_last()
    return state
