"""What a chain or joint fit writes: summary.csv scored on Val and Test, knobmap.yaml with
its protocol record, and the table printed at the end."""
from __future__ import annotations

from pathlib import Path

from common.table import format_table
from jobs.chain import write_summary
from dsp.fitting.by_class import options_kind
from dsp.knobs.knobmap import KnobMap
from audio.datasets import fit_pair_finder
from audio.pairs import align_mode
from jobs.protocol import SPLIT_COLUMNS, add_split_scores, data_key, fit_record

__all__ = ["PARAM_COLUMNS", "BLOCK_COLUMNS", "OPTO_COLUMNS", "param_columns", "write_chain_records"]

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
    kind = options_kind(options)
    return PARAM_COLUMNS + (OPTO_COLUMNS if kind == "opto" else []) + \
        (BLOCK_COLUMNS if kind in ("graybox", "opto") else [])



def write_chain_records(cfg, ckpt_dir: Path, rows: list[dict], pairs, options, method: str,
                         held_out: list[int], extra_columns=(), table_columns=()) -> KnobMap:
    """Score the rows on Val and Test, write summary.csv and knobmap.yaml (with the protocol
    record: method, splits read, levels held out and fitted) and print the table."""
    add_split_scores(rows, pairs, options, float(cfg.data.frame_s), float(cfg.data.overlap_s),
                     align=align_mode(cfg.data))
    write_summary(ckpt_dir / "summary.csv", rows, list(extra_columns) + list(SPLIT_COLUMNS.values()))
    fitted = {}
    for r in rows:
        if r.get("esr") is not None and not r.get("held_out"):   # joint: a row off the curves only
            fitted.setdefault(r["mode"], []).append(int(r["peak_reduction"]))
    protocol = fit_record(method, cfg.data.fit_splits, held_out, fitted,
                          data_key(fit_pair_finder(pairs, cfg.data), fitted))
    kmap = KnobMap.from_rows(rows, protocol)
    kmap.save(ckpt_dir / "knobmap.yaml")
    print(format_table(rows, [("mode", "mode", ""), ("peak_reduction", "PR", "d"), *table_columns] + param_columns(options) +
                       [("esr", "ESR fitting audio", ".4f"), ("esr_val", "ESR Val", ".4f"),
                        ("esr_test", "ESR Test", ".4f"), ("iterations", "iters", "d"), ("seconds", "s", ".1f")]))
    print(f"fitted on {'/'.join(map(str, cfg.data.fit_splits))} material; held out: {held_out or 'none'}")
    return kmap
