"""Render a target through the plain digital compressor (torchcomp semantics).

    python digital_compressor.py IN.wav OUT.wav --threshold -20 --ratio 3 --attack 1 --release 100 --make-up 0

Peak level |x|, hard knee, gain smoothing coefficient 1 - exp(-2200 / (ms * sr)).
"""
from __future__ import annotations

import argparse
import math
import sys

from audio.io import audio_info, process_file
from common.errors import ArgumentParser, UserError, run_main
from dsp.models.classes import model_class
from dsp.models.ff5_streaming import StreamingCompressor


def parse_args(argv):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="audio file to compress (any format libsndfile reads)")
    ap.add_argument("output", help="where to write the result (.wav, .flac, .aiff, .ogg, .mp3; keeps the input's "
                                   "sample format where it can; never the input itself)")
    ap.add_argument("--threshold", type=float, required=True, help="dB")
    ap.add_argument("--ratio", type=float, required=True, help="> 1")
    ap.add_argument("--attack", type=float, required=True, help="ms, > 0")
    ap.add_argument("--release", type=float, required=True, help="ms, > 0")
    ap.add_argument("--make-up", type=float, default=0.0, help="dB (default 0)")
    return ap.parse_args(argv)


def main() -> int:
    a = parse_args(sys.argv[1:])
    values = {"--threshold": a.threshold, "--ratio": a.ratio, "--attack": a.attack, "--release": a.release,
              "--make-up": a.make_up}
    for name, v in values.items():
        if not math.isfinite(v):
            raise UserError(f"{name} must be a finite number, got {v}")
    if a.ratio <= 1.0:
        raise UserError(f"--ratio must be greater than 1, got {a.ratio:g}")
    if a.threshold > 0:   # above full scale a file's samples never reach it: surely a sign slip
        raise UserError(f"--threshold must be at most 0 dBFS, got {a.threshold:g}")
    params = {"threshold_db": a.threshold, "ratio": a.ratio, "attack_ms": a.attack,
              "release_ms": a.release, "make_up_db": a.make_up}
    try:   # the one check of the 5-parameter model's values (fits, maps and the API use it too)
        model_class("ff5").check(params, "digital compressor")
    except ValueError as exc:
        flags = {"threshold_db": "--threshold", "ratio": "--ratio", "attack_ms": "--attack",
                 "release_ms": "--release", "make_up_db": "--make-up"}
        message = str(exc)
        for name, flag in flags.items():
            message = message.replace(f"{name} =", f"{flag} =")
        raise UserError(message) from None
    sr = audio_info(a.input).sample_rate
    stats = process_file(a.input, a.output, StreamingCompressor(params, sr).process)
    print(f"wrote {a.output}")
    if stats["clipped"]:
        print(f"warning: {stats['clipped']} samples clipped to full scale in {a.output}", file=sys.stderr)
    return 0


def cli() -> None:
    """The console command (``pip install -e .``): main with one-line errors."""
    run_main(main)


if __name__ == "__main__":
    cli()
