"""The job of ``train_neural.py``: from the config to a trained model and its test table.

Steps: read the model file ``cfg/neural/<model>.yaml`` (sizes, the head of each
variant, training settings) and apply the command line's overrides; make sure the DSP
chain exists in ``dsp_dir`` (fit it first if not); load the corpus with the DSP gain of
every pair; train on the Train split at every level except ``unseen_levels``, validate
on the Val split at the same levels; then score ``best.pt`` on the Test split at every
level, seen and unseen, against the DSP model, print the table and write it to
``out_dir/test_esr.csv``.

With ``data=manifest`` (a device with arbitrary knobs) the same, by knob setting: the
DSP fits are one per Train row (``train_comp.py data=manifest``, run first if
missing), training uses the Train rows, validation the Val rows, and the test table
covers every Test row's setting (trained at, or new: then its DSP parameters are the
nearest fitted setting's). See :func:`_manifest_material`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

from audio.datasets import load_pairs
from audio.manifest import knob_names, read_manifest
from common.config import CONFIG_DIR, load_config, to_plain
from common.errors import UserError
from dsp.knobmap import KnobMap
from dsp.knobtable import KnobTable, ensure_fitted_table
from dsp.settings import resolve_device
from neural.checkpoint import build_model, fit_cond_norm, knobmap_table, load_checkpoint, model_spec
from neural.data import SAMPLE_RATE, SegmentSampler, load_manifest_tracks, load_tracks, validation_batch
from neural.evaluation import (format_manifest_results, format_results, score_manifest_tracks, score_tracks,
                               summarise, write_manifest_csv, write_results_csv)
from neural.inference import NeuralRenderer
from neural.heads import count_parameters
from neural.training.losses import MIN_STFT_SAMPLES
from neural.training.loop import TrainSettings, train

__all__ = ["VARIANTS", "MANIFEST_VARIANTS", "MODEL_DIR", "model_file", "run_train_job"]

MODEL_DIR = CONFIG_DIR / "neural"
# variant -> conditioning (the heads are chosen per model file)
VARIANTS = {"hybrid": "fitted+knobs", "blackbox": "knobs"}
# the same on a manifest corpus (a device with arbitrary knobs, data=manifest)
MANIFEST_VARIANTS = {"hybrid": "manifest_fitted", "blackbox": "manifest_knobs"}


def model_file(name: str) -> dict:
    """``cfg/neural/<name>.yaml`` as a dict; UserError for an unknown model."""
    known = sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))
    if name not in known:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(known)} (files in {MODEL_DIR})")
    data = yaml.safe_load((MODEL_DIR / f"{name}.yaml").read_text()) or {}
    for key in ("backbone", "hyperparameters", "heads", "train"):
        if key not in data:
            raise UserError(f"{MODEL_DIR / name}.yaml: lacks {key!r}")
    return data


def _settings(cfg, spec_file: dict) -> TrainSettings:
    values = dict(spec_file["train"] or {})
    values.update({k: v for k, v in to_plain(cfg.train).items() if v is not None})
    if cfg.get("max_minutes") is not None:
        values["max_minutes"] = cfg.max_minutes
    return TrainSettings.from_dict(values)


def _ensure_chain(cfg, dsp_dir: Path) -> KnobMap:
    path = dsp_dir / "knobmap.yaml"
    if not path.is_file():
        if not cfg.fit_chain:
            raise UserError(f"{path}: no DSP chain; run `python train_comp.py ckpt_dir={dsp_dir}` first "
                            "(or set fit_chain=true)")
        print(f"no DSP chain in {dsp_dir}: fitting it first (python train_comp.py ckpt_dir={dsp_dir})")
        from dsp.jobs import run_fit_job  # the chain job, as train_comp.py runs it
        modes = ",".join(str(m) for m in cfg.modes)
        fit_cfg = load_config("config", [f"ckpt_dir={dsp_dir}", f"quiet={bool(cfg.quiet)}", f"modes=[{modes}]"])
        fit_cfg.data = cfg.data
        run_fit_job(fit_cfg)
    return KnobMap.load(path)


def _prepare(cfg):
    name, variant = str(cfg.model), str(cfg.variant)
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    spec_file = model_file(name)
    head = str(cfg.head) if cfg.get("head") else str(spec_file["heads"].get(variant, ""))
    hyper = {**(spec_file["hyperparameters"] or {}), **to_plain(cfg.hyperparameters)}
    rows = _manifest_rows(cfg)
    if rows is None:
        conditioning = str(cfg.conditioning) if cfg.get("conditioning") else VARIANTS[variant]
        allowed = ("knobs",) if variant == "blackbox" else ("fitted+knobs", "fitted", "knobs")
        if conditioning not in allowed:
            raise UserError(f"conditioning {conditioning!r} does not suit variant {variant!r}; "
                            f"choose from {', '.join(allowed)}")
        spec = model_spec(spec_file["backbone"], head, conditioning, hyper)
    else:
        spec = model_spec(spec_file["backbone"], head, MANIFEST_VARIANTS[variant], hyper,
                          knobs=len(knob_names(rows)))
    if variant == "blackbox" and head != "blackbox" or variant == "hybrid" and head == "blackbox":
        raise UserError(f"head {head!r} does not suit variant {variant!r}")
    try:
        build_model(spec)
    except ValueError as exc:
        raise UserError(f"model {name}: {exc}") from None
    unseen = sorted({int(v) for v in cfg.unseen_levels})
    if str(cfg.unseen_dsp) not in ("fitted", "interpolated"):
        raise UserError(f"unseen_dsp must be fitted or interpolated, got {cfg.unseen_dsp!r}")
    modes = [str(m) for m in cfg.modes]
    if not modes or any(m not in ("compress", "limit") for m in modes):
        raise UserError(f"modes: use compress and/or limit, got {modes}")
    return name, variant, spec, _settings(cfg, spec_file), unseen, modes, rows


def _manifest_rows(cfg):
    """The manifest's rows when ``data`` is a manifest corpus, else None."""
    if cfg.data.get("kind") != "manifest":
        return None
    return read_manifest(str(cfg.data.path))


@dataclass
class Material:
    """What training needs from a corpus, LA-2A or manifest alike."""
    train: list            # Tracks
    val: list
    record: dict           # the checkpoint entries that describe the settings
    describe: str          # for the start line
    test: Callable         # test(cfg, out_dir) -> int: the Test table of best.pt


def _la2a_material(cfg, dsp_dir: Path, unseen: list, modes: list, limit) -> Material:
    pairs = load_pairs(cfg.data, quiet=cfg.quiet)
    full_map = _ensure_chain(cfg, dsp_dir)
    knobmap = full_map if cfg.unseen_dsp == "fitted" else full_map.subset(lambda pr: pr not in unseen)
    missing = [m for m in modes if m not in knobmap.modes]
    if missing:
        raise UserError(f"{dsp_dir / 'knobmap.yaml'}: no fit for mode {missing[0]!r}")
    lo_hi = {m: (min(knobmap.levels(m)), max(knobmap.levels(m))) for m in modes}
    wanted = None if cfg.get("levels") is None else {int(v) for v in cfg.levels}

    def in_range(mode, pr):
        return mode in lo_hi and lo_hi[mode][0] <= pr <= lo_hi[mode][1] and (wanted is None or pr in wanted)

    def trained(mode, pr):
        return in_range(mode, pr) and pr not in unseen

    train_tracks = load_tracks(pairs, knobmap, ["Train"], trained, cfg.quiet, "train pairs", limit)
    val_tracks = load_tracks(pairs, knobmap, ["Val"], trained, cfg.quiet, "val pairs", limit)
    if not val_tracks:
        raise UserError("no validation material: the Val split has no pair at a trained level")
    levels = {t.level for t in train_tracks}
    assert not any(level[1] in unseen for level in levels | {t.level for t in val_tracks})
    record = {"knobmap": knobmap_table(knobmap), "unseen_levels": unseen,
              "trained_levels": sorted([list(level) for level in levels])}
    return Material(train_tracks, val_tracks, record, f"at {len(levels)} settings, unseen levels {unseen}",
                    lambda cfg, out_dir: _test(cfg, pairs, knobmap, in_range, unseen, out_dir, limit))


# --- a device with arbitrary knobs (data=manifest) --------------------------------------
def _manifest_material(cfg, rows, dsp_dir: Path, limit) -> Material:
    """Train on the Train rows, validate on the Val rows, test on the Test rows.

    The DSP parameters of a setting come from the fits in ``dsp_dir`` (one per row of
    ``data.fit_splits``, fitted first if missing): the fit at that setting, or the
    nearest fitted setting's (:class:`dsp.knobtable.KnobTable`). ``unseen_levels``,
    ``modes`` and ``levels`` do not apply: what is held out is what the manifest puts
    in Val and Test only.
    """
    path = Path(str(cfg.data.path))
    knobs = knob_names(rows)
    fit_rows = [r for r in rows if r.split in set(cfg.data.fit_splits)]
    if not fit_rows:
        raise UserError(f"{path}: no rows in the fitted splits {list(cfg.data.fit_splits)}")
    if not any(r.split == "Train" for r in rows):
        raise UserError(f"{path}: no Train row: nothing to train on")
    if not any(r.split == "Val" for r in rows):
        raise UserError(f"{path}: no Val row: no validation material")
    # every setting must lie near the fitted ones (checked before anything is fitted)
    ranges = KnobTable.of_settings(knobs, [r.knobs for r in fit_rows])
    for r in rows:
        ranges.check(r.knobs, f"{path}: line {r.index} ({r.split})")
    table = ensure_fitted_table(cfg.data, fit_rows, dsp_dir, bool(cfg.fit_chain), bool(cfg.quiet))
    train_tracks = load_manifest_tracks(rows, table, ["Train"], cfg.quiet, "train pairs", limit)
    val_tracks = load_manifest_tracks(rows, table, ["Val"], cfg.quiet, "val pairs", limit)
    trained = sorted({t.level[1] for t in train_tracks})
    record = {"knobmap": {}, "manifest": table.to_record(), "knobs": knobs,
              "trained_settings": [dict(zip(knobs, key)) for key in trained]}
    return Material(train_tracks, val_tracks, record,
                    f"at {len(trained)} settings of the knobs {', '.join(knobs)}",
                    lambda cfg, out_dir: _test_manifest(cfg, rows, table, set(trained), out_dir, limit))


# --- the job ----------------------------------------------------------------------------
def run_train_job(cfg) -> int:
    name, variant, spec, settings, unseen, modes, rows = _prepare(cfg)
    out_dir, dsp_dir = Path(str(cfg.out_dir)), Path(str(cfg.dsp_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: out_dir is a file")
    device = resolve_device(cfg.device)
    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
    limit = int(float(cfg.max_seconds_per_pair) * SAMPLE_RATE) if cfg.get("max_seconds_per_pair") else None
    if rows is None:
        material = _la2a_material(cfg, dsp_dir, unseen, modes, limit)
    else:
        material = _manifest_material(cfg, rows, dsp_dir, limit)
    train_tracks, val_tracks = material.train, material.val
    conditioning = spec["conditioning"]
    sr = SAMPLE_RATE
    if settings.stft_weight and settings.segment_s * sr < MIN_STFT_SAMPLES:
        raise UserError(f"train.segment_s = {settings.segment_s:g} s is too short for the MR-STFT loss "
                        f"(at least {MIN_STFT_SAMPLES / sr:.3f} s), or set train.stft_weight=0")
    sampler = SegmentSampler(train_tracks, round(settings.warmup_s * sr), round(settings.segment_s * sr),
                             settings.batch_size, int(cfg.seed), conditioning, settings.episode)
    val_batch = validation_batch(val_tracks, settings.val_seconds, settings.val_warmup_s, conditioning)

    if cfg.normalise_conditioning:
        spec = {**spec, **model_spec(spec["backbone"], spec["head"], conditioning, spec["hyperparameters"],
                                     fit_cond_norm([t.cond[conditioning] for t in train_tracks]),
                                     knobs=None if rows is None else len(knob_names(rows)))}
    torch.manual_seed(int(cfg.seed))
    model = build_model(spec)
    record = {"model": spec, "variant": variant, "name": f"{name}_{variant}", "sample_rate": sr,
              **material.record, "config": to_plain(cfg), "parameters": count_parameters(model)}
    resume = _resume(cfg, out_dir, spec, variant, model, record.get("knobs"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{name} {variant} ({spec['head']}): {count_parameters(model)} parameters; "
          f"{len(train_tracks)} train pairs {material.describe}; "
          f"batch {settings.batch_size} x ({settings.warmup_s:g} s warm-up + {settings.episode} x "
          f"{settings.segment_s:g} s); "
          f"budget {settings.max_minutes:g} min on {device}" + (" (resumed)" if resume else ""))
    state = train(model, sampler, val_batch, settings, out_dir, record, device, resume, cfg.quiet)
    print(f"stopped at step {state.step} after {state.seconds / 60:.1f} min ({state.stopped}); "
          f"best validation ESR {state.best_val:.4f} at step {state.best_step}")
    if not cfg.test:
        return 0
    return material.test(cfg, out_dir)


def _resume(cfg, out_dir: Path, spec: dict, variant: str, model, knobs=None) -> dict | None:
    last = out_dir / "last.pt"
    if not cfg.resume or not last.is_file():
        return None
    record, old = load_checkpoint(last)
    if (record["model"] != spec or record["variant"] != variant or "resume" not in record
            or record.get("knobs") != knobs):
        raise UserError(f"{last}: holds a run of another model or variant; give resume=false to start over "
                        "or another out_dir")
    if int(record.get("config", {}).get("seed", cfg.seed)) != int(cfg.seed):
        raise UserError(f"{last}: was trained with seed {record['config']['seed']}; give resume=false to start over")
    model.load_state_dict(old.state_dict())
    return record["resume"]


def _test(cfg, pairs, knobmap, in_range, unseen, out_dir: Path, limit) -> int:
    best = out_dir / "best.pt"
    renderer = NeuralRenderer.load(best)
    tracks = load_tracks(pairs, knobmap, ["Test"], in_range, cfg.quiet, "test pairs", limit)
    if not tracks:
        print("no Test material at the trained modes: no test table")
        return 0
    t0 = time.perf_counter()
    rows = score_tracks(tracks, lambda t: renderer.render(t.x, SAMPLE_RATE, t.mode, t.peak_reduction),
                        unseen, cfg.quiet)
    label = f"{renderer.backbone} {renderer.variant}"
    print(f"\nTest ESR (pre-emphasised) of {best} ({renderer.num_parameters} parameters, "
          f"{renderer.head}); rendering took {time.perf_counter() - t0:.0f} s")
    print(format_results(rows, label))
    write_results_csv(out_dir / "test_esr.csv", rows)
    means = {(m["mode"], m["levels"]): m for m in summarise(rows)}
    if ("all", "unseen") in means:
        m = means[("all", "unseen")]
        print(f"\nunseen levels {unseen}: mean ESR {m['esr_model']:.4f} vs DSP {m['esr_dsp']:.4f} "
              f"(x{m['ratio']:.2f})")
    print(f"wrote {best}, {out_dir / 'log.csv'} and {out_dir / 'test_esr.csv'}")
    return 0


def _test_manifest(cfg, rows, table: KnobTable, trained: set, out_dir: Path, limit) -> int:
    best = out_dir / "best.pt"
    renderer = NeuralRenderer.load(best)
    tracks = load_manifest_tracks(rows, table, ["Test"], cfg.quiet, "test pairs", limit)
    if not tracks:
        print("the manifest has no Test row: no test table")
        return 0
    t0 = time.perf_counter()
    results = score_manifest_tracks(tracks, lambda t: renderer.render_knobs(t.x, SAMPLE_RATE, t.knobs),
                                    lambda knobs: tuple(knobs.values()) in trained, cfg.quiet)
    label = f"{renderer.backbone} {renderer.variant}"
    print(f"\nTest ESR (pre-emphasised) of {best} ({renderer.num_parameters} parameters, "
          f"{renderer.head}) per knob setting; rendering took {time.perf_counter() - t0:.0f} s")
    print(format_manifest_results(results, label))
    print("(setting NEW: never trained at; its DSP parameters are the nearest trained setting's)")
    write_manifest_csv(out_dir / "test_esr.csv", results)
    print(f"wrote {best}, {out_dir / 'log.csv'} and {out_dir / 'test_esr.csv'}")
    return 0
