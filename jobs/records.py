"""What a chain or joint fit writes: summary.csv scored on Val and Test, knobmap.yaml with
its protocol record, and the table printed at the end."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from audio.datasets import fit_pair_finder
from audio.pairs import align_mode
from common.records import write_csv
from common.table import format_table
from dsp.fitting.by_class import options_class
from dsp.knobs.knobmap import KnobMap
from jobs.chain import fit_span_setting, write_summary
from jobs.protocol import SPLIT_COLUMNS, add_split_scores, data_key, fit_record
from report.fit_summary import MOST_LISTED, findings

__all__ = ["PARAM_COLUMNS", "BLOCK_COLUMNS", "OPTO_COLUMNS", "DERIVED", "param_columns", "chain_table_columns",
           "invalidate_derived", "write_chain_records", "report_alignment", "print_next_steps"]

PARAM_COLUMNS = [("threshold_db", "thresh dB", ".2f"), ("ratio", "ratio", ".2f"),
                 ("attack_ms", "attack ms", ".3g"), ("release_ms", "release ms", ".4g"),
                 ("make_up_db", "make-up dB", ".2f")]
BLOCK_COLUMNS = [("input_highpass_hz", "in HP Hz", ".3g"), ("input_shelf_hz", "shelf Hz", ".4g"),
                 ("input_shelf_db", "shelf dB", ".2f"), ("tube_drive", "drive", ".3g"),
                 ("tube_asymmetry", "asym", ".3f"), ("output_highpass_hz", "out HP Hz", ".3g")]


OPTO_COLUMNS = [("release_slow_ms", "slow ms", ".4g"), ("slow_fraction", "slow frac", ".2f"),
                ("memory_ms", "memory ms", ".4g"), ("memory_depth", "depth", ".3g"),
                ("sidechain_shelf_hz", "sc shelf Hz", ".4g"), ("sidechain_shelf_db", "sc dB", ".1f"),
                ("input_mix", "mix", ".3g")]


def param_columns(options) -> list:
    """The table columns of the fitted model class's parameters."""
    name = options_class(options)
    return PARAM_COLUMNS + (OPTO_COLUMNS if name == "opto" else []) + \
        (BLOCK_COLUMNS if name in ("graybox", "opto") else [])


def chain_table_columns(options, table_columns=()) -> list[tuple]:
    """The columns of a chain's or joint fit's table (printed, and in its report.html)."""
    return ([("mode", "mode", ""), ("peak_reduction", "PR", "d"), *table_columns] + param_columns(options) +
            [("esr", "fit ESR Train", ".4f"), ("esr_val", "fit ESR Val", ".4f"),
             ("esr_test", "fit ESR Test", ".4f"), ("iterations", "iters", "d"), ("seconds", "s", ".1f")])


# What a fit folder holds besides the fits themselves: read off them, so removed before a
# refit starts and written last (a killed refit leaves no map that disagrees with its levels).
DERIVED = ("knobmap.yaml", "summary.csv", "knobmap_check.csv", "alignment.csv", "joint.yaml", "joint_curves.png",
           "knobcurves.yaml", "joint_summary.csv", "manifest_summary.csv", "report.html")


def invalidate_derived(ckpt_dir: Path) -> None:
    """Remove what is read off the fits (:data:`DERIVED`) as the fitting starts, once the
    inputs and settings were checked: they are written again when it ends."""
    for name in DERIVED:
        with contextlib.suppress(FileNotFoundError):
            (ckpt_dir / name).unlink()



def write_chain_records(cfg, ckpt_dir: Path, rows: list[dict], pairs, options, method: str,
                         held_out: list[int], extra_columns=(), table_columns=(), findings_out: list | None = None
                         ) -> KnobMap:
    """Score the rows on Val and Test, write summary.csv and knobmap.yaml (with the protocol
    record: method, splits read, levels held out and fitted) and print the table; the lines
    said after it are also added to ``findings_out`` when given."""
    add_split_scores(rows, pairs, options, float(cfg.data.frame_s), float(cfg.data.overlap_s),
                     align=align_mode(cfg.data))
    compressor = options_class(options)
    notes = findings(rows, options, ckpt_dir / "summary.csv")   # adds each row's at_bound
    write_summary(ckpt_dir / "summary.csv", rows, compressor,
                  list(extra_columns) + list(SPLIT_COLUMNS.values()) + ["converged", "at_bound"])
    fitted = {}
    for r in rows:
        if r.get("esr") is not None and not r.get("held_out"):   # joint: a row off the curves only
            fitted.setdefault(r["mode"], []).append(int(r["peak_reduction"]))
    protocol = fit_record(method, cfg.data.fit_splits, held_out, fitted,
                          data_key(fit_pair_finder(pairs, cfg.data), fitted), fit_span_setting(cfg.data))
    kmap = KnobMap.from_rows(rows, compressor, protocol)
    kmap.save(ckpt_dir / "knobmap.yaml")
    print(format_table(rows, chain_table_columns(options, table_columns)))
    print(f"{compressor} fitted on {'/'.join(map(str, cfg.data.fit_splits))} material; held out: {held_out or 'none'}")
    for mode in dict.fromkeys(r["mode"] for r in rows):
        esr = [r["esr"] for r in rows if r["mode"] == mode and r.get("esr") is not None]
        if esr:
            print(f"{mode}: mean fit ESR on the fitting audio {np.mean(esr):.4f} over {len(esr)} levels")
    for line in notes:
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)
    if findings_out is not None:
        findings_out.extend(notes)
    return kmap


def report_alignment(folder: Path, corrected: list[dict]) -> None:
    """The pairs whose target latency or polarity was corrected: listed when few, else a count
    and ``alignment.csv`` in ``folder``."""
    if not corrected:
        return
    if len(corrected) <= MOST_LISTED:
        print("aligned (target latency and polarity corrected): "
              + "; ".join(f"{c['pair']}: {c['note']}" for c in corrected))
        return
    write_csv(folder / "alignment.csv", corrected, ["pair", "latency_samples", "polarity", "note"])
    print(f"aligned {len(corrected)} pairs (target latency or polarity corrected): listed in {folder / 'alignment.csv'}")


def print_next_steps(ckpt_dir: Path, kmap: KnobMap) -> None:
    """Where the outputs are and what to run next (the end of every chain or joint fit)."""
    mode = kmap.modes[0]
    levels = kmap.levels(mode)
    pr = levels[len(levels) // 2]
    print(f"outputs in {ckpt_dir}: summary.csv (every level's parameters and ESR), knobmap.yaml (the knob map), "
          f"<mode>/pr_<level>/ckpt.yaml")
    print(f"next: python test_comp.py {ckpt_dir} in.wav out.wav --peak-reduction {pr} --mode {mode}   "
          f"# compress a file at any setting")
    if (ckpt_dir / "report.html").is_file():
        print(f"      open {ckpt_dir / 'report.html'} in a browser   # the fit to look at and listen to")
    print(f"      python export.py {ckpt_dir} model.pt   # one TorchScript file for a host")
    print(f"      python compare.py compressor={kmap.compressor}   # DSP vs hybrid vs black box on Test audio")
