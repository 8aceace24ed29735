"""Audio-rate path after a head's gain: what a gain cannot do (harmonics, a linear filter, its phase).

A head's gain (control rate or per sample) can only scale the signal. A recorded unit
also has a tube stage (mostly second-harmonic distortion) and transformers (a
low-frequency roll-off with its phase lead, a top-end roll-off) around the
compressor (see :mod:`audio.standin`). This path runs after the gain, per sample::

    u -> shaper -> filter -> y

- **Shaper** (``shaper=True``): ``s = u + a2 * u^2 + a3 * u^3``, a static polynomial:
  the asymmetric term makes even harmonics (and a DC offset, which the filter can
  remove), the odd one a symmetric saturation. The coefficients are
  ``(a2, a3) = base + W cond``: learnt, and conditioned on the knobs / fitted
  parameters when the head has a conditioning vector (a tube's drive follows its
  operating level).
- **Filter**: an identity-initialised linear filter in parallel form,
  ``H(z) = sum_i h_i z^-i + sum_k c_k (1 - p_k) / (1 - p_k z^-1)``: a short FIR of
  ``fir_taps`` taps (the top end and short phase: a one-pole low-pass at 16 kHz
  decays within a few samples at 44.1 kHz) plus ``poles`` real one-pole branches
  with unit DC gain, their corners ``f_k`` learnt in log Hz (``p_k = exp(-2 pi f_k / sr)``)
  and initialised log-spaced over ``pole_hz``. A first-order high-pass is one such
  branch with ``c = -1`` beside the FIR's identity, so a transformer's 12-20 Hz
  roll-off and its phase, which would need thousands of FIR taps, take one branch;
  any rational filter with real distinct poles is FIR + branches (partial fractions).

Initialisation: ``a2 = a3 = 0``, ``h = [1, 0, ...]``, ``c = 0``: the path is the
identity and a model with it starts exactly as one without.

Streaming: the shaper is stateless; the filter carries the last ``fir_taps - 1``
shaped samples and the branches' states. :meth:`AudioPath.process` over consecutive
blocks equals one call over their concatenation (to float rounding).

Cost. With gradients (training) the branches run as one linear recurrence per branch,
evaluated chunk-wise: inside a chunk of ``chunk`` samples as a small matrix product (the
powers of ``p``), across chunks by :func:`neural.kernels.scan.scan_parallel` on the
chunk ends. Without gradients, a block of up to 512 samples (a host's buffer) goes
through the whole filter as one matrix product ``[tail, s, h0] @ M -> [y, h_last]``,
``M`` built once per block length and cached until the weights change (their version
counters): a few tensor operations per block, which keeps the S6 hybrid's streaming
speed (benchmarks/streaming.py --audio-path off on). The row ``[tail, s, h0]`` is then
written by one compiled call (:mod:`neural.kernels.shaper`, bit for bit the torch
shaper) where numba is there.

Shape: u, y :math:`(B, T)`; cond :math:`(B, C)`, :math:`(B, T, C)` or None.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import shaper
from .kernels.scan import scan_parallel

__all__ = ["AudioPath", "audio_path_options", "one_pole_bank"]

SAMPLE_RATE = 44100   # the models run at this rate only (neural.inference)
_CHUNK = 32
_BLOCK_MAX = 512      # blocks up to this long run as one cached matrix when no gradient is needed
_DEFAULTS = {"shaper": True, "fir_taps": 16, "poles": 4, "pole_hz": [2.0, 200.0]}

PathState = Tuple[Tensor, Tensor]   # (FIR tail (B, taps - 1), branch states (B, K))


def audio_path_options(options) -> Optional[dict]:
    """The canonical option dict (defaults filled in), or None when the path is off.

    ``options``: None / False / an empty dict (off), True (the defaults), or a dict
    with any of ``shaper`` (bool), ``fir_taps`` (>= 1), ``poles`` (>= 0), ``pole_hz``
    ([low, high] Hz for the initial corners).

    Raises:
        ValueError: an unknown key or a bad value.
    """
    if options is None or options is False or (isinstance(options, dict) and not options):
        return None
    if options is True:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(f"audio_path must be a mapping or null, got {options!r}")
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown audio_path option {unknown[0]!r}; choose from {sorted(_DEFAULTS)}")
    out = {**_DEFAULTS, **options}
    out = {"shaper": bool(out["shaper"]), "fir_taps": int(out["fir_taps"]), "poles": int(out["poles"]),
           "pole_hz": [float(v) for v in out["pole_hz"]]}
    if out["fir_taps"] < 1 or out["poles"] < 0:
        raise ValueError(f"audio_path needs fir_taps >= 1 and poles >= 0, got {out['fir_taps']} and {out['poles']}")
    lo_hi = out["pole_hz"]
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] < SAMPLE_RATE / 2:
        raise ValueError(f"audio_path pole_hz must be [low, high] in (0, {SAMPLE_RATE // 2}) Hz, got {lo_hi}")
    return out


def one_pole_bank(u: Tensor, p: Tensor, h0: Tensor, chunk: int = _CHUNK) -> Tuple[Tensor, Tensor]:
    """``h_k[t] = p_k h_k[t-1] + u[t]`` for every branch ``k``, chunk-wise (see module doc).

    Args:
        u: input :math:`(B, T)`.
        p: poles :math:`(K,)`, in (0, 1).
        h0: states before the first sample :math:`(B, K)`.
        chunk: samples per chunk of the in-chunk matrix product.

    Returns:
        ``(h, h_last)``: :math:`(B, T, K)` and :math:`(B, K)`.
    """
    b, t = u.shape
    if t == 0:
        return u.new_zeros(b, 0, p.shape[0]), h0
    c = min(chunk, t)
    n = -(-t // c)
    pad = n * c - t
    un = F.pad(u, (0, pad)).reshape(b, n, c)
    lag = torch.arange(c, device=u.device)
    diff = (lag[:, None] - lag[None, :]).to(u.dtype)                              # (c, c): t - s
    logp = torch.log(p)
    powers = torch.exp(diff.clamp_min(0)[..., None] * logp) * (diff >= 0)[..., None]   # (c, c, K)
    local = torch.einsum("bns,tsk->bntk", un, powers)                             # from zero per chunk
    decay = torch.exp(c * logp).expand(b, n, -1)
    ends, _ = scan_parallel(decay.contiguous(), local[:, :, -1].contiguous(), h0)  # true state at chunk ends
    incoming = torch.cat([h0.unsqueeze(1), ends[:, :-1]], 1)                      # (b, n, K)
    lead = torch.exp((lag + 1).to(u.dtype)[:, None] * logp)                       # (c, K): p^(t+1)
    h = (local + lead * incoming.unsqueeze(2)).reshape(b, n * c, -1)[:, :t]
    return h, h[:, -1]


class AudioPath(nn.Module):
    """Conditioned shaper and identity-initialised filter (module doc), with a streaming state.

    Args:
        cond_dim: size of the conditioning vector (0: the shaper is not conditioned).
        shaper: whether to apply the polynomial shaper.
        fir_taps: FIR length (1: a plain gain of 1 at the start).
        poles: number of one-pole branches.
        pole_hz: ``[low, high]``: the branches' initial corners, log-spaced.
    """

    def __init__(self, cond_dim: int = 0, shaper: bool = True, fir_taps: int = 16, poles: int = 4,
                 pole_hz=(2.0, 200.0)):
        super().__init__()
        self.cond_dim = int(cond_dim)
        self.use_shaper = bool(shaper)
        self.fir_taps = int(fir_taps)
        self.poles = int(poles)
        if self.use_shaper:
            self.shaper_base = nn.Parameter(torch.zeros(2))
            # zeros built directly (no nn.Linear): the path draws nothing from the global RNG, so a
            # model with it gets the same backbone initialisation as one without
            self.shaper_cond = nn.Parameter(torch.zeros(self.cond_dim, 2)) if self.cond_dim else None
        taps = torch.zeros(self.fir_taps)
        taps[0] = 1.0
        self.fir = nn.Parameter(taps)
        lo, hi = float(pole_hz[0]), float(pole_hz[1])
        self.log_hz = nn.Parameter(torch.linspace(math.log(lo), math.log(hi), self.poles))
        self.branch = nn.Parameter(torch.zeros(self.poles))

    def initial_state(self, batch_size: int) -> PathState:
        """Silence: a zero FIR tail and zero branch states."""
        p = self.fir
        return (torch.zeros(batch_size, self.fir_taps - 1, dtype=p.dtype, device=p.device),
                torch.zeros(batch_size, self.poles, dtype=p.dtype, device=p.device))

    def _coefficients(self, cond: Optional[Tensor]) -> Tensor:
        """The shaper's ``(a2, a3)``: :math:`(2,)`, or :math:`(B, 2)` / :math:`(B, T, 2)` with a cond."""
        a = self.shaper_base
        if self.shaper_cond is not None and cond is not None:
            a = a + cond @ self.shaper_cond       # (B, 2) or (B, T, 2)
        return a

    def _compiled_row(self, u: Tensor, cond: Optional[Tensor], tail: Tensor, h0: Tensor) -> bool:
        """Whether a block's filter row is built by the compiled shaper: no graph, CPU, one dtype,
        cond constant over the block, numba there."""
        if torch.is_grad_enabled() or u.device.type != "cpu" or u.dtype not in (torch.float32, torch.float64):
            return False
        if tail.dtype != u.dtype or h0.dtype != u.dtype or (cond is not None and cond.dim() != 2):
            return False
        return shaper.KERNEL.available()

    def _shape(self, u: Tensor, cond: Optional[Tensor]) -> Tensor:
        a = self._coefficients(cond)
        if a.dim() == 2:
            a = a.unsqueeze(1)                    # (B, 1, 2): constant over the block
        a2, a3 = a[..., 0], a[..., 1]
        return u + u * u * (a2 + a3 * u)

    def process(self, u: Tensor, cond: Optional[Tensor], state: Optional[PathState]) -> Tuple[Tensor, PathState]:
        """One block. Shapes :math:`(B, T)`; returns ``(y, state)``."""
        tail, h0 = self.initial_state(u.shape[0]) if state is None else state
        if u.shape[1] == 0:
            return u, (tail, h0)
        if u.shape[1] <= _BLOCK_MAX and self._compiled_row(u, cond, tail, h0):   # a host block, in one call
            a = self._coefficients(cond) if self.use_shaper else u.new_zeros(u.shape[0], 2)
            row = shaper.filter_row(u, a.expand(u.shape[0], 2).to(u.dtype).contiguous(), self.use_shaper,
                                    tail.contiguous(), h0.contiguous())
            out = row @ self._block_matrix(u.shape[1], u.dtype, u.device)
            n = u.shape[1]
            return out[:, :n], (row[:, n:n + self.fir_taps - 1], out[:, n:])
        s = self._shape(u, cond) if self.use_shaper else u
        ext = torch.cat([tail, s], 1)
        new_tail = ext[:, ext.shape[1] - (self.fir_taps - 1):]
        if u.shape[1] <= _BLOCK_MAX and not torch.is_grad_enabled():   # a host block: one cached matrix
            out = torch.cat([ext, h0], 1) @ self._block_matrix(u.shape[1], u.dtype, u.device)
            return out[:, :u.shape[1]], (new_tail, out[:, u.shape[1]:])
        y = F.conv1d(ext.unsqueeze(1), self.fir.flip(0).view(1, 1, -1)).squeeze(1)
        if self.poles:
            p = self._poles()
            h, h_last = one_pole_bank(s, p, h0)
            y = y + h @ (self.branch * (1 - p))
        else:
            h_last = h0
        return y, (new_tail, h_last)

    def _poles(self) -> Tensor:
        return torch.exp(-2 * math.pi / SAMPLE_RATE * torch.exp(self.log_hz))

    def _block_matrix(self, t: int, dtype, device) -> Tensor:
        """The filter on a block of ``t`` samples as one matrix, cached until the weights change.

        ``[tail, s, h0] @ M = [y, h_last]``: rows: the FIR tail (``taps - 1``), the
        block's shaped samples (``t``), the branch states (``K``); columns: the block's
        output (``t``) and the new branch states (``K``). Built in float64.
        """
        weights = (self.fir, self.log_hz, self.branch)
        # inference tensors (weights loaded under torch.inference_mode) carry no version counter:
        # then nothing is kept, the matrix is built for every block
        key = None if any(p.is_inference() for p in weights) else \
            (t, dtype, device, *((p.data_ptr(), p._version) for p in weights))
        cached = getattr(self, "_block_cache", None)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        taps, k = self.fir_taps, self.poles
        fir = self.fir.detach().double().cpu()
        m = torch.zeros(taps - 1 + t + k, t + k, dtype=torch.float64)
        cols = torch.arange(t)
        for i in range(taps):           # y[t] += fir[i] * ext[t + taps - 1 - i]
            m[cols + taps - 1 - i, cols] += fir[i]
        if k:
            p = self._poles().detach().double().cpu()
            w = self.branch.detach().double().cpu() * (1 - p)
            lag = (cols[None, :] - cols[:, None]).double()                     # (j, t): t - j
            powers = torch.exp(lag.clamp_min(0)[..., None] * torch.log(p)) * (lag >= 0)[..., None]
            m[taps - 1:taps - 1 + t, :t] += powers @ w                         # s -> y through the branches
            m[taps - 1:taps - 1 + t, t:] = p ** (t - 1 - cols.double())[:, None]   # s -> new states
            m[taps - 1 + t:, :t] = (w * p ** (cols.double()[:, None] + 1)).T   # old states -> y
            m[taps - 1 + t:, t:] = torch.diag(p ** t)                          # old states -> new states
        m = m.to(dtype=dtype, device=device)
        if key is not None:
            self._block_cache = (key, m)
        return m

    def forward(self, u: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """Offline, from silence. :math:`(B, T)` -> :math:`(B, T)`."""
        return self.process(u, cond, None)[0]
