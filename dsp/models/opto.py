"""The optical-cell model (``compressor=opto``): an LA-2A-like T4 cell inside the gray-box's blocks.

Built from the published behaviour of the LA-2A and its T4 cell (``../shared/REFERENCE.md``),
per sample ``n`` (the gain ``g`` is the cell's state *before* the sample: the loop is closed
one sample late, as in any causal feedback circuit)::

    y[n]  = Hout(S(m g[n] Hin(x)[n]))            the unit (blocks of dsp.models.graybox)
    s[n]  = (g[n] + mu) x[n]                       sidechain: the attenuated signal (feedback),
                                                   plus limit mode's tap of the input (mu)
    e[n]  = Hsc(s)[n]                              EL panel drive: first-order high shelf,
                                                   brighter with frequency
    P     <- P + a (e^2 - P),  a = a_att if e^2 > P else a_fast       light the cell has taken
    c*    = (P / 10^(T/10))^(gamma / 2)            conductance: a power law of the light
    c_s   <- c_s + a (w c* - c_s),  a = a_mem charging, r_slow exp(-kappa (M - 1/2)) letting go
    g     = 1 / (1 + (1 - w) c* + c_s)             divider: cell against the series resistor
    M     <- M + a_mem ((1 - g) - M)               memory: the reduction's recent history

- **Feedback.** The cell is lit by the attenuated signal, so in compress mode (``mu = 0``)
  a conductance growing as the sidechain level to the power ``gamma`` gives an asymptotic
  ratio of ``1 + gamma``: the stored ``ratio``. Its knee is soft by construction (6 dB of
  reduction where ``c* = 1``). The sidechain sees the input before the input transformer
  (``Hin``): a transformer's roll-offs barely move a level smoothed over milliseconds, and
  it keeps the gain a function of the cell's parameters only, so the blocks can be fitted
  with the gain held, as the gray-box's are.
- **Threshold** ``T`` (``threshold_db``): the light's level (dB re a unit sidechain drive
  squared) at which ``c* = 1``. More peak reduction is more sidechain gain: a lower ``T``.
- **Attack and fast release**: the EL panel is driven by the audio itself, not by a
  rectified level; the light the cell has taken rises towards the squared drive with
  ``attack_ms`` (published: about 10 ms) and falls with ``release_ms`` (40-80 ms to 50 %).
- **Slow release with memory**: a fraction ``w`` (``slow_fraction``) of the conductance
  sits in slow carriers (deep traps) that fill over ``memory_ms`` while the cell is lit, so
  a short transient leaves little behind, and let go with a time constant that grows with
  the memory ``M``, exponentially: ``release_slow_ms`` (0.5-5 s, up to 15 s) at half memory,
  ``memory_depth = exp(kappa)`` times longer at full memory than at none. ``M`` is the
  one-pole average (over ``memory_ms`` too) of the reduction fraction ``1 - g``: the cell
  lets go more slowly after long or heavy reduction. Stored at half memory, the slow time
  is the one the material shows.
- **Limit** mode's tap ``mu`` (``input_mix``, linear amplitude, fitted in limit mode, 0 in
  compress mode) is feed-forward: once ``g`` falls towards ``mu`` the curve steepens.
- **Make-up** ``m`` (``make_up_db``).

Time constants ``tau`` become coefficients ``1 - exp(-1 / (tau sr))`` (the slow stage, whose
rate changes every sample, uses the rate ``1 / (tau sr)`` itself), so a checkpoint works at
any sample rate. Parameter names: :data:`OPTO_NAMES` (the first five share the five-parameter
model's names, so tables keep their columns: ``ratio`` is the asymptotic ratio ``1 + gamma``).

Here: the names, ranges, the start, the map between physical units and the solver's
unconstrained ``z`` (:class:`OptoParameterisation`), and a differentiable torch forward
(:func:`opto_gain`, :func:`opto`: the autograd reference of the fused kernel in
:mod:`dsp.derivatives.opto_kernel`; a Python loop over samples, for short signals only).
Streaming: :mod:`dsp.models.opto_streaming`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dsp.models.blocks import decay_samples, fft_filter, fft_length, section_response, shelf_coefficients
from dsp.models.graybox import BLOCK_NAMES, PREEMPHASIS_CORNER_HZ, PREEMPHASIS_SECTION, blocks_forward
from dsp.models.parameters import check_levels_db

__all__ = ["CORE_NAMES", "OPTO_NAMES", "OPTO_START", "OptoRanges", "OptoParameterisation", "KERNEL_ORDER",
           "Z_ORDER", "MIX", "POWER_FLOOR", "time_coefficient", "natural_from_physical", "opto_gain", "opto"]

# stored order: the five-parameter model's names first (tables, knob maps), then the cell's
CORE_NAMES = ("threshold_db", "ratio", "attack_ms", "release_ms", "make_up_db",
              "release_slow_ms", "slow_fraction", "memory_ms", "memory_depth",
              "sidechain_shelf_hz", "sidechain_shelf_db", "input_mix")
OPTO_NAMES = CORE_NAMES + BLOCK_NAMES

# The solver's coordinates, in the kernel's order (make-up last: it acts after the loop).
Z_ORDER = ("threshold_db", "ratio", "attack_ms", "release_ms", "release_slow_ms", "slow_fraction",
           "memory_ms", "memory_depth", "sidechain_shelf_hz", "sidechain_shelf_db", "input_mix", "make_up_db")
# What the kernel consumes at those positions ("natural" values).
KERNEL_ORDER = ("threshold_db", "gamma", "attack_coef", "release_coef", "slow_rate", "slow_fraction",
                "memory_coef", "memory_log_depth", "shelf_hz", "shelf_db", "input_mix", "make_up_db")
MIX = Z_ORDER.index("input_mix")

# Published behaviour (REFERENCE.md): attack about 10 ms, release 40-80 ms to 50 % then
# 0.5-5 s (up to 15 s), compress ratio 3-4:1, an EL panel brighter with frequency, a little
# input in limit mode. The start sits inside every range.
OPTO_START = {"threshold_db": -30.0, "ratio": 4.0, "attack_ms": 10.0, "release_ms": 60.0, "make_up_db": 0.0,
              "release_slow_ms": 1500.0, "slow_fraction": 0.3, "memory_ms": 3000.0, "memory_depth": 10.0,
              "sidechain_shelf_hz": 3000.0, "sidechain_shelf_db": 6.0, "input_mix": 0.05}

POWER_FLOOR = 1e-30   # panel light below this (digital silence) asks for no conductance
_SCALE = {"threshold_db": "none", "make_up_db": "none", "ratio": "linear", "slow_fraction": "linear",
          "sidechain_shelf_db": "linear", "attack_ms": "log", "release_ms": "log", "release_slow_ms": "log",
          "memory_ms": "log", "memory_depth": "log", "sidechain_shelf_hz": "log", "input_mix": "log"}
NYQUIST_FRACTION = 0.45


def time_coefficient(ms: float, sample_rate: float) -> float:
    """One-pole coefficient ``1 - exp(-1 / (tau sr))`` of a time constant ``tau`` in ms."""
    return -math.expm1(-1000.0 / (float(ms) * float(sample_rate)))


@dataclass(frozen=True)
class OptoRanges:
    """Ranges of the cell's parameters (physical units); see ``cfg/compressor/opto.yaml``.

    ``input_mix`` is the limit-mode tap's range; in compress mode it is held at 0.
    """
    ratio: tuple[float, float] = (1.5, 12.0)                 # asymptotic ratio 1 + gamma (compress 3-4:1)
    attack_ms: tuple[float, float] = (0.5, 100.0)            # about 10 ms
    release_ms: tuple[float, float] = (10.0, 2000.0)         # fast release: 40-80 ms to 50 %
    release_slow_ms: tuple[float, float] = (100.0, 30000.0)  # slow stage at half memory: 0.5-5 s, up to 15 s
    slow_fraction: tuple[float, float] = (0.01, 0.99)
    memory_ms: tuple[float, float] = (100.0, 60000.0)        # how long the cell remembers
    memory_depth: tuple[float, float] = (1.01, 1e4)          # slow time at full over no memory
    sidechain_shelf_hz: tuple[float, float] = (200.0, 20000.0)
    sidechain_shelf_db: tuple[float, float] = (-6.0, 30.0)   # brighter with frequency; a little cut allowed
    input_mix: tuple[float, float] = (0.001, 1.0)

    def __post_init__(self):
        for name, (lo, hi) in self.items():
            lo, hi = float(lo), float(hi)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"range for {name} must satisfy low < high, got {lo}..{hi}")
            if _SCALE[name] == "log" and lo <= 0:
                raise ValueError(f"range for {name} must be positive, got {lo}..{hi}")
            object.__setattr__(self, name, (lo, hi))
        if self.ratio[0] <= 1.0:
            raise ValueError("the ratio range must start above 1 (the cell's exponent is ratio - 1 > 0)")
        if self.slow_fraction[0] < 0 or self.slow_fraction[1] > 1:
            raise ValueError("slow_fraction must lie within 0..1")

    def items(self):
        return [(k, getattr(self, k)) for k in self.__dataclass_fields__]

    @classmethod
    def from_dict(cls, ranges: dict) -> "OptoRanges":
        """From a config mapping ``{name: [low, high]}``; other keys are ignored."""
        return cls(**{k: tuple(float(v) for v in ranges[k]) for k in cls.__dataclass_fields__ if k in ranges})

    def check(self, params: dict, where: str = "parameters", mix_held: bool = False) -> None:
        """Raise ValueError if a cell parameter of ``params`` is missing or out of range
        (``input_mix`` may be 0: compress mode)."""
        for name, (lo, hi) in self.items():
            if name not in params:
                raise ValueError(f"{where}: {name} is missing")
            v = float(params[name])
            if name == "input_mix" and (v == 0.0 or mix_held):
                if not 0.0 <= v <= hi:
                    raise ValueError(f"{where}: input_mix = {v:g} is outside 0..{hi:g}")
                continue
            if not (lo <= v <= hi):
                raise ValueError(f"{where}: {name} = {v:g} is outside {lo:g}..{hi:g}")
        check_levels_db(params, where)


class OptoParameterisation:
    """Maps the solver's unconstrained ``z`` to the cell's values, and back to physical units.

    ``z`` holds the free coordinates of :data:`Z_ORDER`: all of them, or all but
    ``input_mix`` when the mix is held at 0 (compress mode, ``fit_mix=False``). Each is an
    independent scalar map (identity for dB; a sigmoid onto the range, linear or in log),
    so :meth:`natural_derivs` is elementwise.

    Args:
        sample_rate: Hz of the audio being fitted (the coefficients depend on it).
        ranges: :class:`OptoRanges`.
        fit_mix: the limit-mode tap is a free coordinate; False holds it at 0.
    """

    def __init__(self, sample_rate: float, ranges: OptoRanges = OptoRanges(), fit_mix: bool = True):
        self.sample_rate = float(sample_rate)
        self.ranges = ranges
        self.fit_mix = bool(fit_mix)
        self.names = tuple(n for n in Z_ORDER if self.fit_mix or n != "input_mix")
        bounds = []
        for name in self.names:
            if _SCALE[name] == "none":
                bounds.append((0.0, 1.0))
                continue
            lo, hi = getattr(ranges, name)
            if name == "sidechain_shelf_hz":
                cap = NYQUIST_FRACTION * self.sample_rate
                if lo >= cap:
                    raise ValueError(f"range for {name} ({lo:g}..{hi:g} Hz) is above {NYQUIST_FRACTION:g} x the "
                                     f"sample rate {self.sample_rate:g} Hz")
                hi = min(hi, cap)
            bounds.append((math.log(lo), math.log(hi)) if _SCALE[name] == "log" else (lo, hi))
        self._lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
        self._hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)
        self._kind = [_SCALE[n] for n in self.names]

    @property
    def size(self) -> int:
        return len(self.names)

    # --- z <-> physical ---------------------------------------------------------------
    def physical_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """Physical values of the free coordinates (in :attr:`names` order); differentiable."""
        lo, hi = self._lo.to(z), self._hi.to(z)
        mapped = lo + (hi - lo) * torch.sigmoid(z)
        out = []
        for i, kind in enumerate(self._kind):
            out.append(z[i] if kind == "none" else torch.exp(mapped[i]) if kind == "log" else mapped[i])
        return torch.stack(out)

    def natural(self, z: torch.Tensor) -> torch.Tensor:
        """The kernel's values (:data:`KERNEL_ORDER`, ``input_mix`` 0 when held); differentiable.

        Shape: z ``(size,)`` -> ``(12,)``.
        """
        phys = dict(zip(self.names, self.physical_tensor(z)))
        sr = self.sample_rate

        def coef(ms):
            return -torch.expm1(-1000.0 / (ms * sr))

        zero = z.new_zeros(())
        return torch.stack([phys["threshold_db"], phys["ratio"] - 1.0, coef(phys["attack_ms"]),
                            coef(phys["release_ms"]), 1000.0 / (phys["release_slow_ms"] * sr),
                            phys["slow_fraction"], coef(phys["memory_ms"]), torch.log(phys["memory_depth"]),
                            phys["sidechain_shelf_hz"], phys["sidechain_shelf_db"],
                            phys.get("input_mix", zero), phys["make_up_db"]])

    def natural_derivs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Natural values of the free coordinates (``(size,)``, in :attr:`names` order) and
        their elementwise first and second derivatives in ``z``."""
        z = z.detach().to(torch.float64).clone().requires_grad_(True)
        v = self.natural(z)[self._free_index()]
        (d1,) = torch.autograd.grad(v.sum(), z, create_graph=True)   # elementwise map: the diagonal
        (d2,) = torch.autograd.grad(d1.sum(), z)
        return v.detach(), d1.detach(), d2.detach()

    def _free_index(self) -> list[int]:
        return [Z_ORDER.index(n) for n in self.names]   # KERNEL_ORDER is aligned with Z_ORDER

    def to_physical(self, z: torch.Tensor) -> dict[str, float]:
        """The twelve cell parameters in physical units (``input_mix`` 0 when held)."""
        phys = self.physical_tensor(z.detach().to(torch.float64)).tolist()
        out = dict(zip(self.names, phys))
        out.setdefault("input_mix", 0.0)
        return {k: float(out[k]) for k in CORE_NAMES}

    def from_physical(self, params: dict, dtype=torch.float64) -> torch.Tensor:
        """Inverse map; values at or beyond a bound are pulled just inside it (a held or zero
        ``input_mix`` in limit mode starts from :data:`OPTO_START`'s)."""
        out = []
        for i, name in enumerate(self.names):
            v = float(params[name])
            if self._kind[i] == "none":
                out.append(v)
                continue
            if name == "input_mix" and v <= 0.0:
                v = OPTO_START["input_mix"]
            if self._kind[i] == "log":
                v = math.log(max(v, 1e-300))
            lo, hi = float(self._lo[i]), float(self._hi[i])
            u = min(max((v - lo) / (hi - lo), 1e-9), 1 - 1e-9)
            out.append(math.log(u / (1 - u)))
        return torch.tensor(out, dtype=dtype)

    def bound_hits(self, params: dict, tolerance: float = 0.01) -> list[str]:
        """Free parameters within ``tolerance`` of their range's (log-)width of a bound."""
        hits = []
        for i, name in enumerate(self.names):
            if self._kind[i] == "none":
                continue
            v = float(params[name])
            v = math.log(v) if self._kind[i] == "log" else v
            lo, hi = float(self._lo[i]), float(self._hi[i])
            if min(v - lo, hi - v) <= tolerance * (hi - lo):
                hits.append(name)
        return hits


def natural_from_physical(params: dict, sample_rate: float) -> list[float]:
    """The kernel's values (:data:`KERNEL_ORDER`) from physical parameters (floats; no range
    check: a stored fit may have been made with other ranges)."""
    p = {k: float(params[k]) for k in CORE_NAMES}
    return [p["threshold_db"], p["ratio"] - 1.0, time_coefficient(p["attack_ms"], sample_rate),
            time_coefficient(p["release_ms"], sample_rate), 1000.0 / (p["release_slow_ms"] * sample_rate),
            p["slow_fraction"], time_coefficient(p["memory_ms"], sample_rate), math.log(p["memory_depth"]),
            p["sidechain_shelf_hz"], p["sidechain_shelf_db"], p["input_mix"], p["make_up_db"]]


# ------------------------------------------------------------------------------ forward (torch)
def _shelf(natural: torch.Tensor, sample_rate: float):
    return shelf_coefficients(natural[8], natural[9], sample_rate)


def opto_gain(x: torch.Tensor, natural: torch.Tensor, sample_rate: float, linked: bool = False) -> torch.Tensor:
    """The cell's gain applied to each sample (before make-up), from rest; differentiable.

    A Python loop over samples (the reference for the fused kernel's derivatives): for
    short signals. At a stage's switch between following and releasing, and at the knee
    of nothing, the branch taken is held when differentiating (as torchcomp does).

    Args:
        x: input (the sidechain's source).
        natural: ``(12,)`` in :data:`KERNEL_ORDER` (:meth:`OptoParameterisation.natural`).
        sample_rate: Hz (the sidechain shelf's coefficients).
        linked: the rows of ``x`` are one signal's channels with one cell, lit by the mean of
            their squared drives (each its own shelf), as the renderers link a stereo unit;
            False: every row is a signal of its own.

    Shape:
        x: ``(B, T)``; returns ``(B, T)`` (linked: the same gain on every row).
    """
    thr, gamma, a_att, a_fast, r_slow, w, a_mem, depth = (natural[i] for i in range(8))
    mix = natural[10]
    b0, b1, a1 = _shelf(natural, sample_rate)
    k_db = math.log(10.0) / 20.0
    B, T = x.shape
    zeros = x.new_zeros(1 if linked else B) + 0.0 * thr   # on the graph: the states have the parameters' dtype
    g, zsh, light, c_s, mem = zeros + 1.0, x.new_zeros(B) + 0.0 * thr, zeros, zeros, zeros
    out = []
    for n in range(T):
        out.append(g.expand(B))
        s = (g + mix) * x[:, n]
        e = b0 * s + zsh
        zsh = b1 * s - a1 * e
        q = (e * e).mean(0, keepdim=True) if linked else e * e
        light = torch.where(q > light, light + a_att * (q - light), light + a_fast * (q - light))
        lit = light > POWER_FLOOR
        safe = torch.where(lit, light, torch.ones_like(light))
        target = torch.where(lit, torch.exp(gamma * (0.5 * torch.log(safe) - k_db * thr)), torch.zeros_like(light))
        t_s = w * target
        c_f = target - t_s
        rate = r_slow * torch.exp(-depth * (mem - 0.5))
        c_s = torch.where(t_s >= c_s, c_s + a_mem * (t_s - c_s), c_s + rate * (t_s - c_s))
        g = 1.0 / (1.0 + c_f + c_s)
        mem = mem + a_mem * ((1.0 - g) - mem)
    return torch.stack(out, dim=1)


def opto(x: torch.Tensor, natural: torch.Tensor, blocks: torch.Tensor | None, sample_rate: float,
         preemphasised: bool = False, linked: bool = False) -> torch.Tensor:
    """The model's output from rest; differentiable (a reference, for short signals).

    Args:
        x: input.
        natural: ``(12,)`` in :data:`KERNEL_ORDER`.
        blocks: ``(6,)`` block values (:data:`dsp.models.graybox.BLOCK_NAMES` order), or None
            for no blocks (the core alone: ``y = m g x``).
        preemphasised: also apply the loss pre-emphasis.
        linked: the rows of ``x`` are one signal's channels with one cell (:func:`opto_gain`).

    Shape:
        x: ``(B, T)``; returns ``(B, T)``.
    """
    gain = opto_gain(x, natural, sample_rate, linked) * torch.pow(10.0, natural[11] / 20.0)
    if blocks is None:
        y = x * gain
        if not preemphasised:
            return y
        n_fft = fft_length(x.shape[-1], decay_samples(PREEMPHASIS_CORNER_HZ * sample_rate, sample_rate))
        response = section_response((PREEMPHASIS_SECTION,), n_fft, dtype=y.dtype, device=y.device)
        return fft_filter(torch.fft.rfft(y, n=n_fft), response, x.shape[-1], n_fft)
    slowest = min(float(blocks[0]), float(blocks[5]), PREEMPHASIS_CORNER_HZ * sample_rate)
    n_fft = fft_length(x.shape[-1], decay_samples(slowest, sample_rate))
    return blocks_forward(torch.fft.rfft(x, n=n_fft), gain, x.shape[-1], n_fft, blocks, sample_rate, preemphasised)
