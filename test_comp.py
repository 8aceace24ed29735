"""Compress a wav file with a fitted checkpoint, or at any setting through a knob map.

    python test_comp.py CKPT.yaml IN.wav OUT.wav
    python test_comp.py CHAIN_DIR IN.wav OUT.wav --peak-reduction 65 --mode compress

Any sample rate (time constants are in ms), mono or stereo (linked detection on
the louder channel), integer or float files (the output keeps the input's
format); long files are processed in blocks with bounded memory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio.io import audio_info, process_file
from common.errors import UserError, run_main
from dsp.checkpoint import load_checkpoint
from dsp.knobmap import KnobMap
from dsp.render import BlockCompressor


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="ckpt.yaml, or a chain folder holding knobmap.yaml")
    ap.add_argument("input", help="audio file to compress")
    ap.add_argument("output", help="where to write the result (.wav, .flac, .aiff)")
    ap.add_argument("--peak-reduction", type=float, help="PR setting 0..100 (with a chain folder)")
    ap.add_argument("--mode", choices=["compress", "limit"], help="switch setting (with a chain folder)")
    ap.add_argument("--block", type=int, default=1 << 16, help="samples per processing block")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error("--block must be positive")
    return args


def resolve_params(args) -> tuple[dict, str]:
    src = Path(args.checkpoint)
    if src.is_dir():
        if args.peak_reduction is None or args.mode is None:
            raise UserError(f"{src}: a chain folder needs --peak-reduction and --mode")
        if not 0 <= args.peak_reduction <= 100:
            raise UserError(f"--peak-reduction {args.peak_reduction:g} is outside 0..100")
        params = KnobMap.load(src / "knobmap.yaml").at(args.mode, args.peak_reduction)
        return params, f"{args.mode} PR {args.peak_reduction:g} from {src / 'knobmap.yaml'}"
    if args.peak_reduction is not None or args.mode is not None:
        raise UserError(f"{src}: --peak-reduction and --mode need a chain folder, not a ckpt.yaml")
    return load_checkpoint(src)["params"], str(src)


def main() -> int:
    args = parse_args(sys.argv[1:])
    params, source = resolve_params(args)
    sr = audio_info(args.input).sample_rate
    comp = BlockCompressor(params, sr)
    stats = process_file(args.input, args.output, comp.process, args.block)
    print(f"wrote {args.output} ({stats['frames'] / sr:.2f} s, {stats['channels']} ch, {sr} Hz) "
          f"with {source}: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items()))
    if stats["clipped"]:
        print(f"warning: {stats['clipped']} samples clipped to full scale in {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
