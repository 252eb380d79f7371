"""Log-mel front end computed inside the model graph, with librosa's conventions.

The edge runtime hands the graph raw 16 kHz samples, so the spectrogram must be made of ops that
ONNX Runtime and TensorRT both run. TensorRT has no STFT op, so the short-time Fourier transform
is a ``Conv1d`` whose fixed kernels are Hann-windowed cosines and sines (one output channel per
real / imaginary part of a frequency bin) with ``stride = HOP``. The mel filterbank is a constant
matrix, built here in numpy with the same formulas as ``librosa.filters.mel`` (Slaney mel scale,
Slaney area normalisation), so neither the runtime nor the graph ever needs librosa.

Reference (what ``tests/test_audio_frontend.py`` checks)::

    S = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                       n_mels=N_MELS, fmin=FMIN, fmax=FMAX, center=CENTER,
                                       pad_mode=PAD_MODE, power=2.0)
    log_mel = librosa.power_to_db(S, ref=1.0, amin=AMIN, top_db=None)

``top_db`` is None on purpose: librosa's clipping at ``max - top_db`` depends on the loudest bin of
the whole clip, a data-dependent reduction that would couple every token to the clip's peak.

Accuracy in float32 (kernels built in float64, cast once). Rounding in the 512-term DFT sums is
relative to the whole frame's energy, so a mel band's error depends on how far it lies below the
frame's loudest band, not on its absolute level. Measured against librosa in float64 (loud 1 kHz
tone plus white noise at -30 to -110 dB): bands within 60 dB of the frame's peak stay below 1e-3 dB
(1e-5 dB within 30 dB); 60-70 dB below the peak up to 1.6e-3 dB, 80-90 dB below 1.3e-2 dB,
120+ dB below 0.6 dB. Mixtures with broadband content (speech, noise, instruments) keep all bands
within 60 dB and match to ~1e-4 dB everywhere; only near-pure tones over near-digital silence reach
the worse rows. ``tests/test_audio_frontend.py`` checks both statements.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from auditor_lite.data.schema import CLIP_SAMPLES, SAMPLE_RATE
from auditor_lite.preprocess import hz_to_mel, mel_to_hz  # noqa: F401  (re-exported)
from auditor_lite.preprocess import mel_filterbank as _mel_filterbank

N_FFT = 512          # 32 ms window at 16 kHz (the window length equals n_fft)
HOP = 320            # 20 ms hop: 50 spectrogram frames per second, plenty for 1-2 tokens/s
N_MELS = 64
FMIN = 0.0           # librosa default
FMAX = SAMPLE_RATE / 2  # librosa default (fmax=None means sr / 2)
CENTER = True        # frames are centred: the signal is padded by N_FFT // 2 on both sides
PAD_MODE = "constant"  # librosa >= 0.10 default for melspectrogram/stft (zeros); "reflect" also works
AMIN = 1e-10         # power_to_db floor; 10*log10(AMIN) = -100 dB is the lowest value produced
REF = 1.0            # power_to_db reference: dB relative to a power of 1.0
TOP_DB = None        # no peak-relative clipping (see the module docstring)

PAD_MODES = ("constant", "reflect")


def num_spectrogram_frames(num_samples: int = CLIP_SAMPLES, n_fft: int = N_FFT, hop: int = HOP,
                           center: bool = CENTER) -> int:
    """Number of STFT frames librosa produces for ``num_samples`` samples."""
    if center:
        return 1 + num_samples // hop
    return 1 + (num_samples - n_fft) // hop


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float | None = FMAX) -> np.ndarray:
    """Slaney-normalised triangular mel filters, float64 ``(n_mels, n_fft // 2 + 1)``: the torch-free
    builder of :mod:`auditor_lite.preprocess` (librosa's construction), kept in float64 here."""
    return _mel_filterbank(sr, n_fft, n_mels, fmin, fmax, dtype=np.float64)


def dft_kernels(n_fft: int = N_FFT, bins: np.ndarray | None = None) -> np.ndarray:
    """Hann-windowed DFT basis as Conv1d weights, float64 ``(2 * len(bins), 1, n_fft)``.

    Rows ``[0, K)`` give the real parts and ``[K, 2K)`` the imaginary parts of the chosen bins.
    The window is librosa's periodic Hann (``scipy.signal.get_window('hann', n_fft, fftbins=True)``).
    The phase ``2*pi*k*n/n_fft`` is reduced modulo ``n_fft`` in integers before the float64 cosine,
    so large ``k*n`` products lose no precision.
    """
    bins = np.arange(n_fft // 2 + 1) if bins is None else np.asarray(bins)
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    phase = 2.0 * np.pi * ((bins[:, None] * n[None, :]) % n_fft) / n_fft
    real = window * np.cos(phase)
    imag = -window * np.sin(phase)
    return np.concatenate([real, imag], axis=0)[:, None, :]


class LogMelSpectrogram(nn.Module):
    """Waveform ``(B, samples)`` float32 -> log-mel ``(B, n_mels, frames)`` in dB.

    Only FFT bins that some mel filter uses are computed (with fmin=0 and fmax=sr/2 that drops the
    DC and Nyquist bins, whose Slaney weights are exactly zero), which trims the convolution a bit.
    The constants are non-persistent buffers: they are rebuilt from the config, not checkpointed.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP,
                 n_mels: int = N_MELS, fmin: float = FMIN, fmax: float | None = FMAX,
                 center: bool = CENTER, pad_mode: str = PAD_MODE, amin: float = AMIN):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.n_fft, self.hop, self.center, self.pad_mode = n_fft, hop, center, pad_mode
        self.amin = float(amin)
        weights = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        used_bins = np.flatnonzero(weights.max(axis=0) > 0)
        self.num_bins = len(used_bins)
        # Built in float64, cast once: the float32 rounding of the kernel is then the only error
        # the constants add (accuracy: see the module docstring).
        self.register_buffer("dft_kernel", torch.from_numpy(dft_kernels(n_fft, used_bins)).float(),
                             persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(weights[:, used_bins]).float(),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.unsqueeze(1)  # (B, 1, samples)
        if self.center:
            pad = self.n_fft // 2
            x = nn.functional.pad(x, (pad, pad), mode=self.pad_mode)
        spectrum = nn.functional.conv1d(x, self.dft_kernel, stride=self.hop)  # (B, 2K, frames)
        real, imag = spectrum[:, :self.num_bins], spectrum[:, self.num_bins:]
        power = real * real + imag * imag
        mel = torch.matmul(self.mel_basis, power)  # (K_mel, K) @ (B, K, T) -> (B, n_mels, T)
        # power_to_db with ref=1.0: 10*log10(max(S, amin)) - 10*log10(max(amin, ref)) = first term.
        return 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
