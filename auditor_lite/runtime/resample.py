"""Rational-ratio audio resampling in numpy (the edge install has no scipy).

A polyphase windowed-sinc resampler, the method of ``scipy.signal.resample_poly``: for a ratio
``up / down`` (reduced by their gcd) output sample ``n`` sits at input position ``t = n * down / up``
and is ``sum_k x[k] h(t - k)`` with ``h`` a Kaiser-windowed sinc whose cut-off is the lower of the two
Nyquist frequencies (so downsampling is alias-free). Only ``up`` distinct fractional offsets occur,
so the filter is tabulated once per phase and each output is one dot product of ``2 * HALF_TAPS``
input samples. Samples outside the signal count as zero.
"""

from __future__ import annotations

import math

import numpy as np

HALF_TAPS = 32        # taps each side of the output position (scaled up when downsampling)
KAISER_BETA = 8.6
ROLLOFF = 0.95        # cut-off at 95 % of the lower Nyquist frequency: room for the transition band
CHUNK = 8192          # outputs per vectorised block: bounds the (chunk, taps) gather to ~10 MB
# Coprime rates (44100 -> 16000 has 160 phases; 191999 -> 16000 would have 16000) tabulate at most
# this many phases: the fraction is rounded down to 1/4096 of an input sample (a timing error of
# at most 1.3 us at 192 kHz, far below what the log-mel resolves), and the table stays under 30 MB.
MAX_PHASES = 4096


def _phase_filters(up: int, down: int, phases: int) -> np.ndarray:
    """``(phases, 2 H)`` filter taps: row p serves the outputs whose input position has fraction
    p / phases (phases = up, or fewer for coprime rates: :data:`MAX_PHASES`).

    Tap j of row p weighs input sample ``floor(t) - H + 1 + j``. The sinc's cut-off is the lower
    Nyquist frequency (times :data:`ROLLOFF`); when shrinking, the sinc is wider by ``down / up``
    input samples, so H grows with it to keep the filter's shape.
    """
    cutoff = ROLLOFF * min(1.0, up / down)           # relative to the input's Nyquist frequency
    half = int(math.ceil(HALF_TAPS * max(1.0, down / up)))
    offsets = np.arange(-half + 1, half + 1)[None, :]
    distance = offsets - np.arange(phases)[:, None] / phases  # k - t, in input samples, |.| <= half
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (distance / half) ** 2, 0.0, None)))
    return cutoff * np.sinc(cutoff * distance) * window / np.i0(KAISER_BETA)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample 1-D ``wave`` from ``rate_in`` to ``rate_out`` Hz; float32, ``ceil(len * out / in)`` samples."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"resample: expected 1-D samples, got shape {wave.shape}")
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {rate_in} -> {rate_out}")
    if rate_in == rate_out:
        return wave.astype(np.float32)
    g = math.gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    phases = min(up, MAX_PHASES)
    filters = _phase_filters(up, down, phases)
    taps = filters.shape[1]
    first = -(taps // 2) + 1                          # the first tap's input index minus floor(t)
    n_out = -(-len(wave) * up // down)
    padded = np.concatenate([np.zeros(taps), wave, np.zeros(taps)])
    out = np.empty(n_out, np.float32)
    for start in range(0, n_out, CHUNK):
        n = np.arange(start, min(start + CHUNK, n_out))
        base, remainder = np.divmod(n * down, up)     # t = base + remainder / up
        phase = remainder if phases == up else remainder * phases // up
        index = (base + first + taps)[:, None] + np.arange(taps)[None, :]
        out[start:start + len(n)] = np.einsum("ij,ij->i", padded[index], filters[phase])
    return out
