"""Compress a wav file with a fitted checkpoint, or at any setting through a knob map.

    python test_comp.py CKPT.yaml IN.wav OUT.wav
    python test_comp.py CHAIN_DIR IN.wav OUT.wav --peak-reduction 65 --mode compress
    python test_comp.py --neural MODEL.pt IN.wav OUT.wav --peak-reduction 65 --mode compress
    python test_comp.py --neural MODEL.pt IN.wav OUT.wav --knob threshold=-20 --knob ratio=4 ...

A neural checkpoint (from train_neural.py) is recognised by its content, so
``test_comp.py MODEL.pt IN.wav OUT.wav --peak-reduction P --mode M`` works too; it
renders at 44.1 kHz only. A neural model trained on a manifest corpus (a device with
arbitrary knobs) renders at a knob setting: one ``--knob NAME=VALUE`` per knob.

Any sample rate (time constants are in ms), mono or stereo (linked detection on
the louder channel), integer or float files (the output keeps the input's
format); long files are processed in blocks with bounded memory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio.devices import LA2A, MODES, la2a_setting
from audio.io import audio_info, process_file
from common.errors import ArgumentParser, UserError, run_main
from dsp.checkpoint import load_checkpoint
from dsp.knobmap import KnobMap
from dsp.kinds import renderer_for


def parse_args(argv):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # with --neural the checkpoint positional may be left out (IN OUT only)
    neural = any(a == "--neural" or a.startswith("--neural=") for a in argv)
    ap.add_argument("checkpoint", nargs="?" if neural else None,
                    help="ckpt.yaml, a chain folder holding knobmap.yaml, or a neural .pt")
    ap.add_argument("input", help="audio file to compress")
    ap.add_argument("output", help="where to write the result (.wav, .flac, .aiff)")
    ap.add_argument("--peak-reduction", type=float, help="PR setting 0..100 (with a chain folder)")
    ap.add_argument("--mode", choices=list(MODES), help="switch setting (with a chain folder)")
    ap.add_argument("--neural", metavar="MODEL.pt", help="render through a trained neural model")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="knob setting of a neural model trained on a manifest (one per knob)")
    ap.add_argument("--block", type=int, default=1 << 16, help="samples per processing block")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error("--block must be positive")
    return args


def resolve_params(args) -> tuple[dict, str]:
    src = Path(args.checkpoint)
    if not src.exists():
        raise UserError(f"{src}: checkpoint (ckpt.yaml or chain folder) not found")
    if src.is_dir():
        if args.peak_reduction is None or args.mode is None:
            raise UserError(f"{src}: a chain folder needs --peak-reduction and --mode")
        if not 0 <= args.peak_reduction <= 100:
            raise UserError(f"--peak-reduction {args.peak_reduction:g} is outside 0..100")
        kmap = KnobMap.load(src / "knobmap.yaml")
        setting = la2a_setting(args.mode, args.peak_reduction)
        kmap.check(setting, str(src / "knobmap.yaml"))
        params = kmap.at(setting)
        return params, f"{args.mode} PR {args.peak_reduction:g} from {src / 'knobmap.yaml'}"
    if args.peak_reduction is not None or args.mode is not None:
        raise UserError(f"{src}: --peak-reduction and --mode need a chain folder, not a ckpt.yaml")
    return load_checkpoint(src)["params"], str(src)


def neural_checkpoint(args) -> Path | None:
    """The neural checkpoint to render with, or None for the DSP paths."""
    if args.neural is not None:
        if args.checkpoint is not None and Path(args.checkpoint) != Path(args.neural):
            raise UserError(f"{args.checkpoint}: give either a checkpoint or --neural {args.neural}, not both")
        return Path(args.neural)
    if args.checkpoint is None:
        raise UserError("no checkpoint given (CKPT IN OUT, or --neural MODEL.pt IN OUT)")
    from neural.checkpoint import looks_like_checkpoint
    return Path(args.checkpoint) if looks_like_checkpoint(args.checkpoint) else None


def parse_knobs(items: list[str]) -> dict:
    """``["threshold=-20", "ratio=4"]`` -> ``{"threshold": -20.0, "ratio": 4.0}``."""
    knobs = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            knobs[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UserError(f"--knob {item!r}: expected NAME=VALUE with a number")
    return knobs


def main_neural(args, path: Path) -> int:
    from neural.inference import NeuralRenderer
    renderer = NeuralRenderer.load(path)
    if renderer.device != LA2A:
        if args.peak_reduction is not None or args.mode is not None or not args.knob:
            raise UserError(f"{path}: a model of a device with the knobs {', '.join(renderer.knobs)} needs "
                            "--knob NAME=VALUE for each (not --peak-reduction or --mode)")
        setting = parse_knobs(args.knob)
    else:
        if args.knob:
            raise UserError(f"{path}: an LA-2A model takes --peak-reduction and --mode, not --knob")
        if args.peak_reduction is None or args.mode is None:
            raise UserError(f"{path}: a neural model needs --peak-reduction and --mode")
        setting = la2a_setting(args.mode, args.peak_reduction)
    sr = audio_info(args.input).sample_rate
    proc = renderer.block_processor(sr, setting)
    stats = process_file(args.input, args.output, proc, args.block)
    print(f"wrote {args.output} ({stats['frames'] / sr:.2f} s, {stats['channels']} ch, {sr} Hz) with {path} "
          f"({renderer.name}, {renderer.num_parameters} parameters) at {renderer.device.label(setting)}")
    if stats["clipped"]:
        print(f"warning: {stats['clipped']} samples clipped to full scale in {args.output}", file=sys.stderr)
    return 0


def main() -> int:
    args = parse_args(sys.argv[1:])
    neural = neural_checkpoint(args)
    if neural is not None:
        return main_neural(args, neural)
    if args.knob:
        raise UserError("--knob NAME=VALUE is for a neural model trained on a manifest (--neural MODEL.pt)")
    params, source = resolve_params(args)
    sr = audio_info(args.input).sample_rate
    comp = renderer_for(params, sr)   # ff5 or graybox, by the parameters' keys
    stats = process_file(args.input, args.output, comp.process, args.block)
    print(f"wrote {args.output} ({stats['frames'] / sr:.2f} s, {stats['channels']} ch, {sr} Hz) "
          f"with {source}: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items()))
    if stats["clipped"]:
        print(f"warning: {stats['clipped']} samples clipped to full scale in {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
