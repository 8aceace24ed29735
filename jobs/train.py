"""The job of ``train_neural.py``: from the config to a trained model and its test table.

Steps: take the model from the config group ``cfg/model/<model>.yaml`` (sizes, the head
of each variant, training settings) with the command line's overrides; make sure the
DSP fit exists in ``dsp_dir`` (:func:`jobs.ensure.ensure_dsp_fit`: fitted first if
not); load the corpus's takes with the DSP gain at their setting; train on the Train
split, validate on the Val split; then score ``best.pt`` on the Test split against the
DSP model, print the table and write it to ``out_dir/test_esr.csv``.

The corpus decides what is held out (:func:`la2a_corpus`, :func:`_takes_corpus`):

- the LA-2A chain: every level but ``unseen_levels`` is trained at (within ``modes``
  and ``levels``); the Test table covers every level, seen and unseen;
- a manifest (``data=manifest``, a device with its own knobs): the DSP fits are one
  per Train take; training uses the Train takes, validation the Val takes, and the
  test table covers every Test take's setting (trained at, or new: then its DSP
  parameters are the nearest fitted setting's).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numba
import torch
from omegaconf import OmegaConf

from audio.datasets import load_pairs
from audio.devices import LA2A, MODES, Device
from audio.manifest import manifest_device, read_manifest
from audio.pairs import align_mode
from audio.rates import check_rates
from common.config import to_plain
from common.errors import UserError
from common.tracking import NULL_TRACKER
from dsp.knobs.knobtable import KnobTable
from dsp.knobs.parammap import ParamMap
from jobs.fit_options import compressor_name, resolve_device
from neural.conditioning import check_dsp_class
from jobs.ensure import ensure_dsp_fit
from jobs.overrides import check_overrides
from jobs.protocol import held_out_levels
from jobs.resume import check_resumable
from neural.checkpoint import build_model, fit_cond_norm, load_checkpoint, model_spec
from neural.control import frame_at_rate
from neural.conditioning import DEFAULT_SAMPLE_RATE
from neural.training.data import HALF, SegmentSampler, load_tracks, tracks_rate, validation_batch
from audio.metrics import TEST_SKIP_S
from neural.evaluation import format_results, score_tracks, summarise, write_results_csv
from neural.inference import NeuralRenderer
from neural.training.losses import MIN_STFT_SAMPLES
from neural.heads import count_parameters
from neural.training.loop import TrainSettings, train
from report.tensorboard import log_audio_pairs, log_esr_vs_setting, log_knob_map, open_tracker

__all__ = ["run_train_job", "la2a_corpus"]


def _settings(cfg) -> TrainSettings:
    values = dict(to_plain(cfg.model.train) or {})
    values.update({k: v for k, v in to_plain(cfg.train).items() if v is not None})
    if cfg.get("max_minutes") is not None:
        values["max_minutes"] = cfg.max_minutes
    return TrainSettings.from_dict(values)


def _audio_path(model, variant: str):
    """The model file's ``audio_path`` for the variant (cfg/model/base.yaml), or None."""
    value = (model.get("audio_path") or {}).get(variant)
    return value if value is None or isinstance(value, bool) else to_plain(value)


def _prepare(cfg, device: Device):
    name, variant = str(cfg.model.name), str(cfg.variant)
    if variant not in device.variants:
        raise UserError(f"unknown variant {variant!r}; choose from {', '.join(device.variants)}")
    model = cfg.model
    head = str(cfg.head) if cfg.get("head") else str(model.heads.get(variant, ""))
    hyper = {**(to_plain(model.hyperparameters) or {}), **to_plain(cfg.hyperparameters)}
    default, allowed = device.variants[variant]
    conditioning = str(cfg.conditioning) if cfg.get("conditioning") else default
    if conditioning not in allowed:
        raise UserError(f"conditioning {conditioning!r} does not suit variant {variant!r}; "
                        f"choose from {', '.join(allowed)}")
    try:
        spec = model_spec(model.backbone, head, conditioning, hyper, device=device,
                          audio_path=_audio_path(model, variant))
    except ValueError as exc:
        raise UserError(f"model {name}: {exc}") from None
    if variant == "blackbox" and head != "blackbox" or variant == "hybrid" and head == "blackbox":
        raise UserError(f"head {head!r} does not suit variant {variant!r}")
    try:
        build_model(spec)
    except ValueError as exc:
        raise UserError(f"model {name}: {exc}") from None
    return name, variant, spec, _settings(cfg)


@dataclass
class Corpus:
    """What training and its test need from a corpus, whatever the device."""
    device: Device
    param_map: ParamMap
    train: list                       # Tracks
    val: list
    record: dict                      # the checkpoint entries that describe the settings
    describe: str                     # for the start line
    test_tracks: Callable[[], list]   # the Test tracks
    seen: Callable[[dict], bool]      # whether a setting was trained at
    no_test: str                      # said when there is no Test material
    per: str = ""                     # what the test table is by
    note: str = ""                    # printed under it


def la2a_corpus(cfg, dsp_dir: Path, limit) -> Corpus:
    """The LA-2A training corpus of ``cfg`` (``train_neural.py``'s config) under the protocol: its
    Train and Val tracks at the trained levels, its Test tracks at every level, the DSP fit in
    ``dsp_dir`` (fitted first if missing, the unseen levels held out); ``limit`` samples per file
    at most (None: all). Also what ``benchmarks/hybrid_headroom.py`` scores a run on."""
    unseen = held_out_levels(cfg)
    modes = [str(m) for m in cfg.modes]
    if not modes or any(m not in MODES for m in modes):
        raise UserError(f"modes: use compress and/or limit, got {modes}")
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    # the protocol: a Train-only fit that never saw the unseen levels; their parameters are the knob model's
    param_map = ensure_dsp_fit(cfg.data, dsp_dir, fit=bool(cfg.fit_chain), quiet=bool(cfg.quiet), modes=modes,
                               unseen=unseen, compressor=compressor_name(cfg))
    missing = [m for m in modes if m not in param_map.modes]
    if missing:
        raise UserError(f"{dsp_dir / 'knobmap.yaml'}: no fit for mode {missing[0]!r}")
    lo_hi = {m: (min(param_map.levels(m)), max(param_map.levels(m))) for m in modes}
    wanted = None if cfg.get("levels") is None else {int(v) for v in cfg.levels}

    def in_range(s: dict) -> bool:
        mode, pr = s["mode"], s["peak_reduction"]
        return mode in lo_hi and lo_hi[mode][0] <= pr <= lo_hi[mode][1] and (wanted is None or pr in wanted)

    def seen(s: dict) -> bool:
        return s["peak_reduction"] not in unseen

    def trained(s: dict) -> bool:
        return in_range(s) and seen(s)

    hybrid = str(cfg.get("variant", "hybrid")) == "hybrid"   # a black box reads no DSP feature
    halves = _fitted_halves(cfg, dsp_dir, modes, unseen) if cfg.get("crossfit") and hybrid else None
    train_tracks = load_tracks(pairs, param_map, ["Train"], trained, cfg.quiet, "train pairs", limit,
                               align_mode(cfg.data), halves)
    val_tracks = load_tracks(pairs, param_map, ["Val"], trained, cfg.quiet, "val pairs", limit, align_mode(cfg.data))
    if not val_tracks:
        raise UserError("no validation material: the Val split has no pair at a trained level")
    levels = {t.level for t in train_tracks}
    assert not any(level[1] in unseen for level in levels | {t.level for t in val_tracks})
    record = {"unseen_levels": unseen, "trained_levels": sorted([list(level) for level in levels]),
              "crossfit": bool(halves)}
    return Corpus(LA2A, param_map, train_tracks, val_tracks, record,
                  f"at {len(levels)} settings, unseen levels {unseen}"
                  + ("; DSP features out of fold (crossfit: each half of a take rendered by the other half's fit)"
                     if halves else ""),
                  lambda: load_tracks(pairs, param_map, ["Test"], in_range, cfg.quiet, "test pairs", limit, align_mode(cfg.data)),
                  seen, "no Test material at the trained modes: no test table")


def _fitted_halves(cfg, dsp_dir: Path, modes: list[str], unseen: list[int]) -> tuple[ParamMap, ParamMap]:
    """``crossfit``: the chains of the first and of the second half of every Train take
    (``data.fit_span``), in ``dsp_dir/crossfit/first_half`` and ``second_half``, fitted first where
    missing (Train only, the unseen levels held out, as ``dsp_dir``'s chain)."""
    halves = []
    for name, span in (("first_half", [0.0, HALF]), ("second_half", [HALF, 1.0])):
        data = OmegaConf.merge(cfg.data, {"fit_span": span})
        halves.append(ensure_dsp_fit(data, dsp_dir / "crossfit" / name, fit=bool(cfg.fit_chain), quiet=bool(cfg.quiet),
                                     modes=modes, unseen=unseen, compressor=compressor_name(cfg), report=False))
    return halves[0], halves[1]


def _takes_corpus(cfg, rows, dsp_dir: Path, limit) -> Corpus:
    """Train on the Train takes, validate on the Val takes, test on the Test takes.

    The DSP parameters of a setting come from the fits in ``dsp_dir`` (one per take of
    ``data.fit_splits``, fitted first if missing): the fit at that setting, or the
    nearest fitted setting's (:class:`dsp.knobs.knobtable.KnobTable`). ``unseen_levels``,
    ``modes`` and ``levels`` do not apply: what is held out is what the manifest puts
    in Val and Test only.
    """
    path = Path(str(cfg.data.path))
    if cfg.get("crossfit"):
        raise UserError(f"{path}: crossfit=true needs a chain of takes to cut in halves (the LA-2A corpus); "
                        "a manifest's fits are one per take")
    device = manifest_device(rows)
    fit_rows = [r for r in rows if r.split in set(cfg.data.fit_splits)]
    if not fit_rows:
        raise UserError(f"{path}: no rows in the fitted splits {list(cfg.data.fit_splits)}")
    if not any(r.split == "Train" for r in rows):
        raise UserError(f"{path}: no Train row: nothing to train on")
    if not any(r.split == "Val" for r in rows):
        raise UserError(f"{path}: no Val row: no validation material")
    # every setting must lie near the fitted ones (checked before anything is fitted)
    ranges = KnobTable.of_settings(list(device.knobs), [r.knobs for r in fit_rows])
    for r in rows:
        ranges.check(r.knobs, f"{path}: line {r.index} ({r.split})")
    table = ensure_dsp_fit(cfg.data, dsp_dir, fit_rows, fit=bool(cfg.fit_chain), quiet=bool(cfg.quiet))
    train_tracks = load_tracks(rows, table, ["Train"], quiet=cfg.quiet, desc="train pairs", max_samples=limit,
                               align=align_mode(cfg.data))
    val_tracks = load_tracks(rows, table, ["Val"], quiet=cfg.quiet, desc="val pairs", max_samples=limit,
                             align=align_mode(cfg.data))
    trained = sorted({t.level for t in train_tracks})
    record = {"trained_settings": [device.setting(key) for key in trained]}
    return Corpus(device, table, train_tracks, val_tracks, record,
                  f"at {len(trained)} settings of the knobs {', '.join(device.knobs)}",
                  lambda: load_tracks(rows, table, ["Test"], quiet=cfg.quiet, desc="test pairs", max_samples=limit,
                                     align=align_mode(cfg.data)),
                  lambda s: device.key(s) in set(trained), "the manifest has no Test row: no test table",
                  per=" per knob setting",
                  note="(setting NEW: never trained at; its DSP parameters are "
                       + ("the knob curves' there)" if table.between == "curves" else "the nearest trained setting's)"))


# --- the job ----------------------------------------------------------------------------
def run_train_job(cfg) -> int:
    check_overrides(cfg)
    torch_device = resolve_device(cfg.device)   # device=cuda without CUDA: said before any work
    rows = read_manifest(str(cfg.data.path)) if cfg.data.get("kind") == "manifest" else None
    if rows is None:
        check_dsp_class(compressor_name(cfg))   # before a DSP fit is made for nothing
    device = LA2A if rows is None else manifest_device(rows)
    name, variant, spec, settings = _prepare(cfg, device)
    out_dir, dsp_dir = Path(str(cfg.out_dir)), Path(str(cfg.dsp_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: out_dir is a file")
    rate = _training_rate(cfg, rows)
    spec = _spec_at_rate(spec, rate)
    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
        # the numba kernels (the loss's pre-emphasis through torchlpc, the compressor's gain)
        # on as many threads: their parallel loops only spin on shared cores otherwise
        numba.set_num_threads(min(int(cfg.threads), numba.config.NUMBA_NUM_THREADS))
    limit = int(float(cfg.max_seconds_per_pair) * rate) if cfg.get("max_seconds_per_pair") else None
    corpus = la2a_corpus(cfg, dsp_dir, limit) if rows is None else _takes_corpus(cfg, rows, dsp_dir, limit)
    conditioning = spec["conditioning"]
    sr = tracks_rate(corpus.train + corpus.val) if corpus.train or corpus.val else rate
    if sr != rate:   # the headers said otherwise (a file changed under us)
        raise UserError(f"the takes read are at {sr} Hz, their headers said {rate} Hz")
    if settings.stft_weight and settings.segment_s * sr < MIN_STFT_SAMPLES:
        raise UserError(f"train.segment_s = {settings.segment_s:g} s is too short for the MR-STFT loss "
                        f"(at least {MIN_STFT_SAMPLES / sr:.3f} s), or set train.stft_weight=0")
    sampler = SegmentSampler(corpus.train, round(settings.warmup_s * sr), round(settings.segment_s * sr),
                             settings.batch_size, int(cfg.seed), conditioning, settings.episode)
    val_batch = validation_batch(corpus.val, settings.val_seconds, settings.val_warmup_s, conditioning)

    if cfg.normalise_conditioning:
        spec = {**spec, **model_spec(spec["backbone"], spec["head"], conditioning, spec["hyperparameters"],
                                     fit_cond_norm([t.cond[conditioning] for t in corpus.train]), device,
                                     spec.get("audio_path"))}
    torch.manual_seed(int(cfg.seed))
    model = build_model(spec)
    record = {"model": spec, "variant": variant, "name": f"{name}_{variant}", "sample_rate": sr,
              "param_map": corpus.param_map.to_record(), "knobs": list(device.knobs), **corpus.record,
              "config": to_plain(cfg), "parameters": count_parameters(model), "train_settings": asdict(settings)}
    resume = _resume(cfg, out_dir, record, model, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{name} {variant} ({spec['head']}): {count_parameters(model)} parameters; "
          f"{len(corpus.train)} train pairs {corpus.describe}; "
          f"batch {settings.batch_size} x ({settings.warmup_s:g} s warm-up + {settings.episode} x "
          f"{settings.segment_s:g} s); "
          f"{settings.max_steps} steps (time cap {settings.max_minutes:g} min) on {torch_device}; "
          f"{_rate_note(spec, sr)}"
          + (" (resumed)" if resume else ""))
    with open_tracker(cfg.get("logger", "csv"), out_dir) as tracker:
        state = train(model, sampler, val_batch, settings, out_dir, record, torch_device, resume, cfg.quiet,
                      tracker)
        print(f"stopped at step {state.step} after {state.seconds / 60:.1f} min ({state.stopped}); "
              f"best validation ESR {state.best_val:.4f} at step {state.best_step}")
        if state.stopped.startswith("stopped by the time cap"):
            print(f"warning: {state.stopped}; the result depends on this machine's speed", file=sys.stderr)
        _track_examples(tracker, corpus, out_dir, state.step)
        if not cfg.test:
            return 0
        return _test(cfg, corpus, out_dir, tracker, state.step)


def _track_examples(tracker, corpus: Corpus, out_dir: Path, step: int, count: int = 3) -> None:
    """Target against best.pt (and the DSP model) on the first seconds of Val takes at up to
    ``count`` settings, and the knob-map figure (``logger=tensorboard``)."""
    if tracker is NULL_TRACKER:
        return
    log_knob_map(tracker, corpus.param_map, step)
    renderer = NeuralRenderer.load(out_dir / "best.pt")
    picked, examples = set(), []
    for t in corpus.val:
        key = corpus.device.key(t.setting)
        if key in picked or len(picked) >= count:
            continue
        picked.add(key)
        n = 5 * t.sample_rate
        label = "_".join(f"{k}{v}" for k, v in t.setting.items())
        examples.append((label, t.y[:n], renderer.render(t.x[:n], t.sample_rate, t.setting)))
    if examples:
        log_audio_pairs(tracker, examples, corpus.val[0].sample_rate, step)
    tracker.flush()


def _training_rate(cfg, rows) -> int:
    """The corpus's one sample rate, which the model trains at, read from the file headers
    before the DSP fit and the training (a corpus that mixes rates is refused here, not
    after the fit)."""
    takes = rows if rows is not None else load_pairs(cfg.data, quiet=cfg.quiet)
    if not takes:   # nothing to read: the corpus code says what is missing
        return DEFAULT_SAMPLE_RATE
    return check_rates([p for t in takes for p in (t.input, t.target)])


def _spec_at_rate(spec: dict, sample_rate: int) -> dict:
    """``spec`` with its control frame (given in samples at 44.1 kHz) lasting as long at
    ``sample_rate`` (:func:`neural.control.frame_at_rate`)."""
    hyper = spec["hyperparameters"]
    if "frame" not in hyper:
        return spec
    frame = frame_at_rate(int(hyper["frame"]), sample_rate)
    return {**spec, "hyperparameters": {**hyper, "frame": frame}}


def _rate_note(spec: dict, sample_rate: int) -> str:
    frame = int(spec["hyperparameters"].get("frame", 1))
    if frame == 1:
        return f"{sample_rate} Hz, per sample"
    return f"{sample_rate} Hz, control frame {frame} samples ({1000.0 * frame / sample_rate:.2f} ms)"


def _resume(cfg, out_dir: Path, now: dict, model, device: Device) -> dict | None:
    """The saved run's ``resume`` entry (its weights loaded into ``model``), or None to start
    fresh; a UserError when ``last.pt`` was trained with other settings (:mod:`jobs.resume`)."""
    last = out_dir / "last.pt"
    if not last.is_file():
        return None
    if not cfg.resume:
        print(f"resume=false: starting over (replacing {last})")
        return None
    record, old = load_checkpoint(last)
    if "resume" not in record or record["param_map_obj"].device != device:
        raise UserError(f"{last}: holds a run of another model or device; give resume=false to start over "
                        "or another out_dir")
    check_resumable(last, record, now)
    model.load_state_dict(old.state_dict())
    return record["resume"]


def _test(cfg, corpus: Corpus, out_dir: Path, tracker=None, step: int = 0) -> int:
    best = out_dir / "best.pt"
    renderer = NeuralRenderer.load(best)
    tracks = corpus.test_tracks()
    if not tracks:
        print(corpus.no_test)
        return 0
    t0 = time.perf_counter()
    rows = score_tracks(tracks, lambda t: renderer.render(t.x, t.sample_rate, t.setting), corpus.seen, cfg.quiet,
                        float(cfg.get("skip_s", TEST_SKIP_S)))
    label = f"{renderer.backbone} {renderer.variant}"
    print(f"\nTest ESR (pre-emphasised) of {best} ({renderer.num_parameters} parameters, "
          f"{renderer.head}){corpus.per}; rendering took {time.perf_counter() - t0:.0f} s")
    print(format_results(rows, label, corpus.device))
    if corpus.note:
        print(corpus.note)
    write_results_csv(out_dir / "test_esr.csv", rows, corpus.device)
    if tracker is not None and corpus.device is LA2A:   # the ESR-vs-setting figure, model against DSP
        figure_rows = [{"mode": r["setting"]["mode"], "peak_reduction": r["setting"]["peak_reduction"],
                        "model": model, "kind": kind, "esr": r[key]}
                       for r in rows for model, kind, key in ((renderer.backbone, renderer.variant, "esr_model"),
                                                              ("dsp", "dsp", "esr_dsp"))]
        log_esr_vs_setting(tracker, figure_rows, [s["peak_reduction"] for s in
                                                  (r["setting"] for r in rows if not r["seen"])], step)
        tracker.scalars(step, {f"test/esr_{m['mode']}_{m['levels']}": m["esr_model"]
                               for m in summarise(rows, corpus.device)})
    means = {(m["mode"], m["levels"]): m for m in summarise(rows, corpus.device)}
    if corpus.device is LA2A and ("all", "unseen") in means:
        m = means[("all", "unseen")]
        print(f"\nunseen levels {sorted({int(v) for v in cfg.unseen_levels})}: mean ESR {m['esr_model']:.4f} "
              f"vs DSP {m['esr_dsp']:.4f} (x{m['ratio']:.2f})")
    print(f"wrote {best}, {out_dir / 'log.csv'} and {out_dir / 'test_esr.csv'}")
    return 0
