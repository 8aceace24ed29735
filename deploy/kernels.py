"""Block kernels for the exported modules: few TorchScript operations per block, whatever its length.

A host hands a plug-in 32 to 512 samples at a time. In TorchScript every tensor operation
costs about a microsecond of dispatch whatever its size (half that in place), and every
scalar step of a loop tens of nanoseconds, so a per-sample loop over a 64-sample block
costs more than the block's whole arithmetic. These kernels compute a block in a number
of tensor operations that does not grow with its length:

- :func:`smooth_log_gain`: the compressor's gain smoother
  ``g[n] = g[n-1] + c_n (f[n] - g[n-1])``, ``c_n`` the attack coefficient where
  ``f[n] < g[n-1]`` and the release one elsewhere. Once the attack/release pattern is
  known the recursion is linear: ``g = P (g0 + cumsum(c f / P))``, ``P = cumprod(1 - c)``,
  computed in the log domain in float64 (``log P`` a cumulative sum, the sum a
  ``logcumsumexp``: nothing under- or overflows at any length). The pattern is guessed
  from the state (``f[n] < g0``: the gain moves little within a block), the recursion
  solved, the pattern recomputed from the solution, and so on until it is consistent:
  then the solution is the recursion's (to float64 rounding). Each round keeps the
  prefix before the first wrong decision, so it ends; on program material one round is
  the rule (about 9 in 10 blocks of 64 samples, at most a few rounds at 512), and after
  :data:`ROUNDS` rounds the rest of the block runs the sample loop. The first round is
  checked without a shift: ``f[n] < g[n-1]`` holds exactly when ``f[n] < g[n]`` does (the
  new gain lies between the old one and the target), one comparison fewer.
- :class:`BlockLTI`: a linear time-invariant filter with its state (first-order sections
  in series, a FIR with one-pole branches: any state-space form) as one matrix product per
  block, ``[state, x] @ M = [y, new state]``; the matrix is built per block length from
  the state-space form (powers of ``A`` by doubling) and kept while the filter stays the
  same. A gain before and after the filter is folded into it (it scales ``B, D`` and
  ``C, D``: the state keeps its meaning when a gain changes). Blocks longer than
  :data:`LTI_CHUNK` samples (twice that for a filter of order 4 or less, whose matrix is
  smaller) go through in pieces.

Denormals: a filter state decaying through a long silence reaches the subnormal range,
where each multiplication costs tens of times more; states are flushed to zero below
:data:`FLUSH` often enough that none gets there (every ``flush_samples``), and matrix
entries below it are zero.

TorchScript turns ``torch.tensor(list of floats, dtype=torch.float64)`` into float32
values; :func:`exact_tensor` builds exact ones (slow: small lists, rare paths).
"""
# no "from __future__ import annotations": TorchScript reads the annotations as types

import math
from typing import Dict, Final, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ROUNDS", "PIECE", "LTI_CHUNK", "FLUSH", "TIE", "exact_tensor", "smooth_gain_loop", "smooth_log_gain",
           "sections_state_space", "lti_block_matrix", "flush_interval", "BlockLTI"]

ROUNDS = 8          # rounds of the guessed pattern before the rest of a piece runs the loop
PIECE = 512         # samples per smoother solve: a longer block goes in pieces (fewer rounds each)
LTI_CHUNK = 128     # samples per matrix product of a BlockLTI (longer blocks go in pieces)
FLUSH = 1e-200      # states and matrix entries below this are zero (no subnormal numbers)
TIE = 1e-12         # log gains closer than this are a tie: either decision gives the same gain
_CACHE_LENGTHS = 8  # block lengths whose matrices a BlockLTI keeps


def exact_tensor(values: List[float]) -> Tensor:
    """A float64 tensor holding exactly ``values`` (see the module doc). Shape :math:`(len,)`."""
    out = torch.empty(len(values), dtype=torch.float64)
    for i in range(len(values)):
        out[i].fill_(values[i])
    return out


def smooth_gain_loop(f: List[float], g: float, at: float, rt: float) -> List[float]:
    """The smoother sample by sample (torchcomp's arithmetic): the reference and the fallback."""
    out: List[float] = []
    for v in f:
        c = at if v < g else rt
        g = g * (1.0 - c)
        g = g + c * v
        out.append(g)
    return out


def smooth_log_gain(lnf: Tensor, lg0: Tensor, lr: Tensor, lrt: Tensor, dla: float, dlc: float, at: float,
                    rt: float, rounds: int = 8, piece: int = 512) -> Tensor:
    """The gain smoother over a block in the log domain, exact (see the module doc).

    Args:
        lnf: log of the static gain, :math:`(1, T)` float64, ``<= 0``.
        lg0: log of the gain before the block, :math:`(1, 1)` float64.
        lr, lrt: ``log(1 - rt)`` and ``log(rt)``, 0-d float64 tensors.
        dla, dlc: ``log(1 - at) - log(1 - rt)`` and ``log(at) - log(rt)``.
        at, rt: attack and release coefficients, in (0, 1).
        rounds: rounds of the guessed pattern (:data:`ROUNDS`) before the loop takes over.
        piece: samples per solve (:data:`PIECE`).

    Returns:
        :math:`(1, T)` float64: the log gain after each sample.
    """
    n = lnf.shape[1]
    if n <= piece:
        return _smooth_piece(lnf, lg0, lr, lrt, dla, dlc, at, rt, rounds)
    parts: List[Tensor] = []
    start = 0
    while start < n:
        length = min(piece, n - start)
        lg = _smooth_piece(lnf.narrow(1, start, length), lg0, lr, lrt, dla, dlc, at, rt, rounds)
        lg0 = lg.narrow(1, length - 1, 1)
        parts.append(lg)
        start += length
    return torch.cat(parts, 1)


def _smooth_piece(lnf: Tensor, lg0: Tensor, lr: Tensor, lrt: Tensor, dla: float, dlc: float, at: float,
                  rt: float, rounds: int) -> Tensor:
    n = lnf.shape[1]
    attack = lnf < lg0
    kept: List[Tensor] = []   # final prefixes
    for r in range(rounds):
        # the linear recursion for this pattern: log P = cumsum(log(1 - c)),
        # log g = log P + log(g0 + sum(exp(log c + log f - log P)))
        af = attack.to(torch.float64)
        log_p = torch.add(lr, af, alpha=dla).cumsum_(1)
        e = torch.add(lnf, af, alpha=dlc).add_(lrt).sub_(log_p)
        lg = torch.logaddexp(torch.logcumsumexp(e, 1), lg0).add_(log_p)
        # the quick check compares with the gain lowered by a tie's width: a release where f and g
        # agree to rounding (a silence, a steady level) passes it (the gain returned is 1e-12 low)
        low = lg - 1e-12
        if r == 0 and torch.equal(lnf < low, attack):
            return low
        # a decision is wrong only clearly so: where f and g agree to rounding (a silence, a
        # steady level) both choices give the same gain, and rounding must not flip them forever
        prev = torch.cat([lg0, lg.narrow(1, 0, n - 1)], 1)
        surely = lnf < prev - 1e-12   # TIE
        maybe = lnf < prev + 1e-12
        wrong = (surely & ~attack) | (attack & ~maybe)
        if not bool(wrong.any()):
            return lg if len(kept) == 0 else torch.cat(kept + [lg], 1)
        # the decisions before the first wrong one stand (the first is always right): keep that
        # prefix and go on from there with the decisions the solution gives
        first = int(wrong.int().argmax())
        kept.append(lg.narrow(1, 0, first))
        lg0 = lg.narrow(1, first - 1, 1)
        lnf = lnf.narrow(1, first, n - first)
        attack = (lnf < prev.narrow(1, first, n - first))
        n -= first
    values: List[float] = lnf.exp().reshape(-1).tolist()
    rest = exact_tensor(smooth_gain_loop(values, math.exp(float(lg0)), at, rt)).log().reshape(1, -1)
    return torch.cat(kept + [rest], 1)


def sections_state_space(sections: List[List[float]]) -> Tuple[Tensor, Tensor, Tensor, float]:
    """State-space form ``(A, B, C, D)`` of first-order sections ``(b0 + b1 z^-1) / (1 + a1 z^-1)`` in series.

    Each section is transposed direct form II (``y = b0 u + s``, ``s' = b1 u - a1 y``), one
    state per section, in the order given. Shapes: A :math:`(k, k)`, B, C :math:`(k,)`, float64.
    """
    k = len(sections)
    a = [[0.0] * k for _ in range(k)]
    b = [0.0] * k
    c = [0.0] * k
    d = 1.0
    for i in range(k):
        b0, b1, a1 = sections[i][0], sections[i][1], sections[i][2]
        r = b1 - a1 * b0
        # the section's input u = c . s + d x (the cascade so far); its state s_i' = r u - a1 s_i
        for j in range(i):
            a[i][j] = r * c[j]
        a[i][i] = -a1
        b[i] = r * d
        for j in range(i):
            c[j] = b0 * c[j]
        c[i] = 1.0
        d = b0 * d
    flat: List[float] = []
    for row in a:
        flat += row
    return exact_tensor(flat).reshape(k, k), exact_tensor(b), exact_tensor(c), d


def flush_interval(poles: List[float]) -> int:
    """Samples a state may decay undisturbed before it is flushed: from :data:`FLUSH` the
    fastest of these poles takes longer than that to reach the subnormal range (2.2e-308)."""
    fastest = 0.0
    for p in poles:
        if p != 0.0:
            fastest = max(fastest, -math.log(min(abs(p), 1.0 - 1e-12)))
    if fastest == 0.0:
        return 1 << 30
    return max(1, int(200.0 / fastest))   # 1e-200 -> 1e-287: clear of the subnormal range


def _matrix_power(a: Tensor, n: int) -> Tensor:
    result = torch.eye(a.shape[0], dtype=a.dtype)
    base = a
    while n > 0:
        if n % 2 == 1:
            result = result @ base
        base = base @ base
        n = n // 2
    return result


def lti_block_matrix(a: Tensor, b: Tensor, c: Tensor, d: float, n: int) -> Tensor:
    """The filter on a block of ``n`` samples as one matrix: ``[s0, x] @ M = [y, s_n]``.

    For ``s[t+1] = A s[t] + B x[t]``, ``y[t] = C s[t] + D x[t]``: rows are the ``k`` states
    before the block, then its ``n`` samples; columns the ``n`` outputs, then the ``k`` states
    after it. The powers of ``A`` come by doubling (``log2 n`` products). Entries below
    :data:`FLUSH` are zero. Shape :math:`(k + n, n + k)`, float64.
    """
    k = a.shape[0]
    if k == 0:
        return torch.eye(n, dtype=torch.float64) * d
    obs = c.reshape(1, k)           # rows C A^t
    ctrl = b.reshape(k, 1)          # columns A^t B
    power = a
    m = 1
    while m < n:
        obs = torch.cat([obs, obs @ power], 0)
        ctrl = torch.cat([ctrl, power @ ctrl], 1)
        power = power @ power
        m *= 2
    obs = obs[:n]                   # (n, k): y[t] from s0
    ctrl = ctrl[:, :n]              # (k, n): column t is A^t B
    h = torch.cat([torch.full([1], d, dtype=torch.float64), (obs[:n - 1] @ b)])   # impulse response, (n,)
    lag = torch.arange(n).reshape(1, n) - torch.arange(n).reshape(n, 1)          # (j, t): t - j
    toeplitz = torch.where(lag >= 0, h[lag.clamp_min(0)], torch.zeros(1, dtype=torch.float64))
    m_full = torch.zeros(k + n, n + k, dtype=torch.float64)
    m_full[:k, :n] = obs.t()
    m_full[k:, :n] = toeplitz
    m_full[:k, n:] = _matrix_power(a, n).t()
    m_full[k:, n:] = ctrl.flip(1).t()          # x[j] -> A^(n-1-j) B
    return F.hardshrink(m_full, 1e-200)        # FLUSH


class BlockLTI(nn.Module):
    """A linear time-invariant filter with its state, one matrix product per block.

    The filter is set with :meth:`set_system` (or :meth:`set_sections`) and the gains
    around it with :meth:`set_gains`; matrices are rebuilt only when these change. The
    state is per channel; a block with another channel count starts from rest.

    Shape: ``forward`` :math:`(C, T)` (float32 or float64) -> :math:`(C, T)` float64.
    """

    key: List[float]
    cache: Dict[int, Tensor]
    gain_in: float
    gain_out: float
    flush_samples: int
    since_flush: int
    chunk: Final[int]
    flush: Final[float]
    lengths: Final[int]

    def __init__(self):
        super().__init__()
        self.key = []
        self.cache = {}
        self.chunk = LTI_CHUNK
        self.flush = FLUSH
        self.lengths = _CACHE_LENGTHS
        self.gain_in = 1.0
        self.gain_out = 1.0
        self.flush_samples = 1
        self.since_flush = 0
        self.a = torch.zeros(0, 0, dtype=torch.float64)
        self.b = torch.zeros(0, dtype=torch.float64)
        self.c = torch.zeros(0, dtype=torch.float64)
        self.d = 1.0
        self.state = torch.zeros(0, 0, dtype=torch.float64)

    @torch.jit.export
    def reset(self) -> None:
        self.state = torch.zeros(0, self.a.shape[0], dtype=torch.float64)
        self.since_flush = 0

    @torch.jit.export
    def set_system(self, a: Tensor, b: Tensor, c: Tensor, d: float, key: List[float], flush_samples: int) -> None:
        """Use the system ``(A, B, C, D)``, identified by ``key``; a new order restarts from rest.

        ``flush_samples``: how often the state is flushed (:func:`flush_interval` of the poles
        whose states decay undisturbed in a silence).
        """
        if key == self.key:
            return
        if a.shape[0] != self.a.shape[0]:
            self.state = torch.zeros(0, a.shape[0], dtype=torch.float64)
        self.a, self.b, self.c, self.d = a, b, c, d
        self.key = key
        self.flush_samples = flush_samples
        self.cache.clear()

    @torch.jit.export
    def set_sections(self, sections: List[List[float]]) -> None:
        """Use first-order sections in series (:func:`sections_state_space`); a silence leaves the
        first section's state to decay on its own (the others follow their inputs)."""
        key: List[float] = []
        for s in sections:
            key += s
        if key == self.key:
            return
        a, b, c, d = sections_state_space(sections)
        self.set_system(a, b, c, d, key, flush_interval([-sections[0][2]]) if len(sections) > 0 else 1)

    @torch.jit.export
    def set_gains(self, gain_in: float, gain_out: float) -> None:
        """``y = gain_out H(gain_in x)``, folded into the matrices (rebuilt when a gain changes)."""
        if gain_in != self.gain_in or gain_out != self.gain_out:
            self.gain_in = gain_in
            self.gain_out = gain_out
            self.cache.clear()

    def matrix(self, n: int) -> Tensor:
        m = self.cache.get(n)
        if m is None:
            if len(self.cache) >= self.lengths:
                self.cache.clear()
            m = lti_block_matrix(self.a, self.b * self.gain_in, self.c * self.gain_out,
                                 self.d * self.gain_in * self.gain_out, n)
            self.cache[n] = m
        return m

    def forward(self, x: Tensor) -> Tensor:
        channels, n = x.shape[0], x.shape[1]
        k = self.a.shape[0]
        if self.state.shape[0] != channels:
            self.state = torch.zeros(channels, k, dtype=torch.float64)
        if n == 0:
            return x.to(torch.float64)
        chunk = self.chunk if k > 4 else 2 * self.chunk   # a low order keeps the matrix small: longer pieces
        if n <= chunk:
            return self._piece(x, n, k)
        parts: List[Tensor] = []
        for piece in x.split(chunk, 1):
            parts.append(self._piece(piece, piece.shape[1], k))
        return torch.cat(parts, 1)

    @torch.jit.export
    def tick(self, n: int) -> None:
        """Count ``n`` samples towards the next flush of the state, and flush when it is due."""
        self.since_flush += n
        if self.since_flush >= self.flush_samples:
            self.state = F.hardshrink(self.state, self.flush)
            self.since_flush = 0

    def _piece(self, x: Tensor, n: int, k: int) -> Tensor:
        self.tick(n)
        y, self.state = torch.mm(torch.cat([self.state, x], 1), self.matrix(n)).split([n, k], 1)   # cat promotes x
        return y
