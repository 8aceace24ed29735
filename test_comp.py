"""Compress audio with a fitted checkpoint, or at any setting through a knob map or a neural model.

    python test_comp.py CKPT.yaml IN.wav OUT.wav
    python test_comp.py FIT_DIR IN.wav OUT.wav               # the folder a one-pair fit wrote
    python test_comp.py CHAIN_DIR IN.wav OUT.wav --peak-reduction 65 --mode compress   # chain or joint fit
    python test_comp.py MANIFEST_FIT_DIR IN.wav OUT.wav --knob threshold=-20 --knob ratio=4 ...
    python test_comp.py --neural MODEL.pt IN.wav OUT.wav --peak-reduction 65 --mode compress
    python test_comp.py --neural MODEL.pt IN.wav OUT.wav --knob threshold=-20 --knob ratio=4 ...
    python test_comp.py CKPT.yaml IN_DIR OUT_DIR              # every audio file of a folder

A neural checkpoint (from train_neural.py) is recognised by its content, so
``test_comp.py MODEL.pt IN.wav OUT.wav --peak-reduction P --mode M`` works too. A neural
fit of a manifest corpus (a device with arbitrary knobs: per-take fits or knob curves),
and a neural model trained on one, render at a knob setting: one ``--knob NAME=VALUE``
per knob. A setting outside what was fitted is an error naming the nearest fitted setting
(fits and neural models alike).

Any sample rate (DSP: time constants are in ms; a neural model at another rate than
its own: resampled in and out), mono or stereo (linked gain: detection on the louder
channel), any readable format in, wav/flac/aiff/ogg/mp3 out (the output keeps the
input's sample format where it can); long files are processed in blocks with bounded
memory and a progress bar. The output never replaces the input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio.devices import LA2A, MODES, la2a_setting
from common.errors import ArgumentParser, UserError, run_main
from jobs.render import dsp_source, neural_source, render_path


def parse_args(argv):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # with --neural the checkpoint positional may be left out (IN OUT only)
    neural = any(a == "--neural" or a.startswith("--neural=") for a in argv)
    ap.add_argument("checkpoint", nargs="?" if neural else None,
                    help="a fit (ckpt.yaml or its folder, a chain or joint fit folder, a manifest fit folder) "
                         "or a neural .pt")
    ap.add_argument("input", help="audio file to compress, or a folder of them")
    ap.add_argument("output", help="where to write the result (.wav, .flac, .aiff, .ogg, .mp3), or a folder")
    ap.add_argument("--peak-reduction", type=float, help="PR setting 0..100 (an LA-2A chain or joint fit, or model)")
    ap.add_argument("--mode", choices=list(MODES), help="switch setting (an LA-2A chain or joint fit, or model)")
    ap.add_argument("--neural", metavar="MODEL.pt", help="render through a trained neural model")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="knob setting of a manifest fit or of a neural model trained on one (one per knob)")
    ap.add_argument("--block", type=int, default=1 << 16, help="samples per processing block (default 65536)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error("--block must be positive")
    return args


def neural_checkpoint(args) -> Path | None:
    """The neural checkpoint to render with, or None for the DSP paths."""
    if args.neural is not None:
        if args.checkpoint is not None and Path(args.checkpoint) != Path(args.neural):
            raise UserError(f"{args.checkpoint}: give either a checkpoint or --neural {args.neural}, not both")
        return Path(args.neural)
    if args.checkpoint is None:
        raise UserError("no checkpoint given (CKPT IN OUT, or --neural MODEL.pt IN OUT)")
    from neural.checkpoint import looks_like_checkpoint
    path = Path(args.checkpoint)
    if looks_like_checkpoint(path):
        return path
    if path.suffix.lower() in (".pt", ".pth") and path.is_file():
        raise UserError(f"{path}: not a readable neural checkpoint (not a torch zip file: damaged or truncated?)")
    return None


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


def setting_from_args(args, device, where) -> dict | None:
    """The knob setting the command line gives for a model of ``device`` (None: a one-pair
    fit, which takes none)."""
    if device is None:
        if args.peak_reduction is not None or args.mode is not None or args.knob:
            raise UserError(f"{where}: a one-pair fit has fixed parameters; --peak-reduction, --mode and --knob "
                            "need a chain folder (or a joint or manifest fit)")
        return None
    if device != LA2A:
        if args.peak_reduction is not None or args.mode is not None or not args.knob:
            raise UserError(f"{where}: a model of a device with the knobs {', '.join(device.knobs)} needs "
                            "--knob NAME=VALUE for each (not --peak-reduction or --mode)")
        return parse_knobs(args.knob)
    if args.knob:
        raise UserError(f"{where}: an LA-2A model takes --peak-reduction and --mode, not --knob")
    if args.peak_reduction is None or args.mode is None:
        raise UserError(f"{where}: an LA-2A model needs --peak-reduction and --mode")
    if not 0 <= args.peak_reduction <= 100:   # NaN too
        raise UserError(f"--peak-reduction {args.peak_reduction:g} is outside 0..100")
    return la2a_setting(args.mode, args.peak_reduction)


def main() -> int:
    args = parse_args(sys.argv[1:])
    neural = neural_checkpoint(args)
    if neural is not None:
        from neural.inference import NeuralRenderer
        renderer = NeuralRenderer.load(neural)
        source = neural_source(renderer, neural, setting_from_args(args, renderer.device, neural))
    else:
        from dsp.storage.open_fit import open_fit
        fit = open_fit(Path(args.checkpoint))
        source = dsp_source(fit, setting_from_args(args, fit.device, fit.path))
    return render_path(source, Path(args.input), Path(args.output), args.block, args.quiet)


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
