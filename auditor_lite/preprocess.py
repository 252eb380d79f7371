"""Turn decoded media into the model's input arrays. numpy only: the edge runtime (no torch) uses it.

Definitions (the model was trained on exactly these; change them only with a retrain):

* Pixels: RGB ``uint8`` scaled by :data:`PIXEL_SCALE` to ``[0, 1]``. No mean/std normalisation:
  every image branch starts with a convolution followed by BatchNorm, which learns that affine.
* Resizing: area averaging (each output pixel is the mean of the input area it covers, like
  OpenCV's ``INTER_AREA``), the same for frames, key frame and masks. Images are squashed to a
  square (no crop, no letterbox): frames and masks are resized the same way, so they stay aligned.
  The model inputs are resized on integers (:mod:`auditor_lite.resize`: exact area means, the
  same numbers bit for bit on its reference and its fast route, which is the one used here; the
  float :func:`area_resize` stays for float images). ``threads`` shares a clip's frames or masks
  over that many threads (the runtime passes its graphs' thread count: ``Auditor.preprocess_threads``).
* Masks: boolean ``(H, W)``; after area resizing a pixel is inside when at least
  :data:`MASK_THRESHOLD` of its area was inside (so an unchanged size is an exact copy).
* Audio: float32 mono at :data:`SAMPLE_RATE`; zero-padded at the end or cut to :data:`CLIP_SAMPLES`.
  No resampling here: other rates are an error (resample when decoding).
* Log-mel (:func:`log_mel`): librosa's log-mel in plain numpy, once per clip; the grounded context
  graph reads it (tests/test_logmel_numpy.py checks it against librosa).

Layouts (B = 1 clip, N masks): frames ``(1, 10, 3, S, S)``, key frame ``(1, 3, K, K)``, masks
``(N, 1, K, K)``, audio ``(1, CLIP_SAMPLES)``, text embedding ``(1, 384)``; all float32. ``S`` and
``K`` are the config's ``frame_size`` and ``key_size`` (``config.json`` of a checkpoint).
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from auditor_lite.data.schema import CLIP_SAMPLES, NUM_FRAMES, SAMPLE_RATE
from auditor_lite.resize import area_means, masks_inside

PIXEL_SCALE = 1.0 / 255.0
MASK_THRESHOLD = 0.5
TEXT_EMBEDDING_DIM = 384

# Log-mel front end, librosa's (tests/test_logmel_numpy.py checks it against librosa):
# librosa.feature.melspectrogram(sr=16000, n_fft=512, hop_length=320, n_mels=64, center=True,
# pad_mode="constant", power=2.0) then librosa.power_to_db(ref=1.0, amin=1e-10, top_db=None).
N_FFT = 512                      # 32 ms window (window length = n_fft, periodic Hann)
HOP_LENGTH = 320                 # 20 ms hop: 50 frames per second
N_MELS = 64
FMIN = 0.0
FMAX = SAMPLE_RATE / 2
AMIN = 1e-10                     # power floor: -100 dB is the lowest value produced
N_FRAMES_PER_CLIP = 1 + CLIP_SAMPLES // HOP_LENGTH  # 501 log-mel frames for a 10 s clip


def _block_mean(x: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Integer-factor area resize of ``(..., H, W, C)``: the mean of each ``fy x fx`` block.

    Summing the ``fy * fx`` strided views is several times faster than ``reshape(...).mean(axes)``,
    which matters: the clip's 10 frames are resized on every new clip of the runtime.
    """
    total = np.array(x[..., 0::fy, 0::fx, :], dtype=np.float32)
    for dy in range(fy):
        for dx in range(fx):
            if dy or dx:
                total += x[..., dy::fy, dx::fx, :]
    total *= np.float32(1.0 / (fy * fx))
    return total


def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area-average one axis to ``n_out`` samples for any ratio (up or down), exactly.

    Output ``i`` is the mean of the piecewise-constant input over ``[e_i, e_i+1)`` with
    ``e_i = i * n_in / n_out``: the whole pixels from ``ceil(e_i)`` to ``ceil(e_i+1)`` (one
    ``add.reduceat`` pass), plus the part of the pixel cut by ``e_i`` that lies right of it, minus
    the part of the pixel cut by ``e_i+1`` that lies right of that edge.
    """
    x = np.moveaxis(x, axis, 0)
    n_in = x.shape[0]
    edges = np.arange(n_out + 1) * (n_in / n_out)
    first_whole = np.minimum(np.ceil(edges - 1e-9).astype(int), n_in)  # first pixel right of edge
    cut = np.minimum(np.floor(edges + 1e-9).astype(int), n_in - 1)     # pixel holding the edge
    whole = np.add.reduceat(x, np.minimum(first_whole[:-1], n_in - 1), axis=0, dtype=np.float32)
    whole[first_whole[1:] <= first_whole[:-1]] = 0  # reduceat yields x[start] for empty segments
    right_of_edge = (first_whole - edges).clip(0, 1).astype(np.float32)
    partial = x[cut].astype(np.float32) * right_of_edge.reshape(-1, *[1] * (x.ndim - 1))
    out = (whole + partial[:-1] - partial[1:]) * np.float32(n_out / n_in)
    return np.moveaxis(out, 0, axis)


def area_resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average ``(..., H, W, C)`` images to ``(..., height, width, C)`` float32.

    Each output pixel is the mean of the input area it covers (fractional pixels weighted by the
    covered fraction), like OpenCV's ``INTER_AREA`` when shrinking.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"area_resize: expected (..., H, W, C) images, got shape {images.shape}")
    h_in, w_in = images.shape[-3], images.shape[-2]
    if (h_in, w_in) == (height, width):
        return images.astype(np.float32)
    if h_in % height == 0 and w_in % width == 0 and (h_in // height) * (w_in // width) <= 16:
        return _block_mean(images, h_in // height, w_in // width)
    return _area_axis(_area_axis(images, height, images.ndim - 3), width, images.ndim - 2)


def _rgb_uint8(name: str, array, ndim: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[-1] != 3 or array.dtype != np.uint8:
        want = "(10, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"{name}: expected uint8 RGB {want}, got {array.dtype} {array.shape}")
    return array


def prepare_frames(frames: np.ndarray | Sequence[np.ndarray], size: int, *, threads: int | None = 1) -> np.ndarray:
    """uint8 ``(10, H, W, 3)`` clip frames (or a sequence of 10 ``(H, W, 3)`` frames, which saves
    stacking them) -> float32 ``(1, 10, 3, size, size)`` in [0, 1]; ``threads``: module docstring."""
    if isinstance(frames, np.ndarray):
        frames = _rgb_uint8("frames", frames, 4)
    else:
        frames = [_rgb_uint8("frames", frame, 3) for frame in frames]
        if len({frame.shape for frame in frames}) > 1:
            raise ValueError(f"frames: all frames must have the same size, got {sorted({f.shape for f in frames})}")
    if len(frames) != NUM_FRAMES:
        raise ValueError(f"frames: expected {NUM_FRAMES} frames, got {len(frames)}")
    x = area_means(frames, size, size, threads=threads, scale=PIXEL_SCALE, channels_first=True)
    return x[None]


def prepare_key_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` audited frame -> float32 ``(1, 3, size, size)`` in [0, 1].

    In image mode this is the clip's key frame; in video mode, the frame being audited.
    """
    frame = _rgb_uint8("key_frame", frame, 3)
    return area_means(frame[None], size, size, scale=PIXEL_SCALE, channels_first=True)


def prepare_masks(masks: np.ndarray | Sequence[np.ndarray], size: int, *, threads: int | None = 1) -> np.ndarray:
    """Boolean masks ``(N, H, W)`` (or a list of ``(H, W)``) -> float32 ``(N, 1, size, size)`` in {0, 1};
    ``threads``: module docstring."""
    if isinstance(masks, np.ndarray):
        stack = masks[None] if masks.ndim == 2 else masks
    else:
        if len(masks) == 0:
            raise ValueError("masks: need at least one mask")
        shapes = {np.shape(m) for m in masks}
        if len(shapes) != 1:
            raise ValueError(f"masks: all masks must have the same size, got {sorted(shapes)}")
        stack = np.stack([np.asarray(m) for m in masks])
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"masks: expected (N, H, W) or (H, W) masks, got shape {np.shape(masks)}")
    inside = masks_inside(stack.astype(bool, copy=False), size, size, MASK_THRESHOLD, threads=threads)
    return inside.astype(np.float32)[:, None]


def prepare_audio(wave: np.ndarray, sample_rate: int, num_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """Mono float samples at 16 kHz -> float32 ``(1, num_samples)``, zero-padded or cut at the end."""
    wave = np.asarray(wave)
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio: sample rate {sample_rate} Hz, the model needs {SAMPLE_RATE} Hz "
                         "(resample when decoding)")
    if wave.ndim != 1 or not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"audio: expected 1-D float mono samples, got {wave.dtype} {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("audio: samples contain NaN or infinity")
    out = np.zeros((1, num_samples), dtype=np.float32)
    keep = min(len(wave), num_samples)
    out[0, :keep] = wave[:keep]
    return out


def prepare_text_embedding(embedding: np.ndarray) -> np.ndarray:
    """A MiniLM sentence embedding ``(384,)`` or ``(1, 384)`` -> float32 ``(1, 384)``."""
    x = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    if x.shape[1] != TEXT_EMBEDDING_DIM or not np.all(np.isfinite(x)):
        raise ValueError(f"text_embedding: expected {TEXT_EMBEDDING_DIM} finite values, "
                         f"got shape {np.shape(embedding)}")
    return x


# --- Log-mel front end ----------------------------------------------------------------------------
# Slaney mel scale, written as librosa.hz_to_mel / mel_to_hz (htk=False): results agree bit for bit.
_F_SP = 200.0 / 3                # Hz per mel below 1 kHz (linear part)
_MIN_LOG_HZ = 1000.0             # the scale turns logarithmic above 1 kHz
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel value of frequencies in Hz (``librosa.hz_to_mel(hz, htk=False)``), float64."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz of Slaney mel values (``librosa.mel_to_hz(mel, htk=False)``), float64."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = _F_SP * mel
    logarithmic = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float | None = FMAX, dtype=np.float32) -> np.ndarray:
    """Slaney-normalised triangular mel filters, ``dtype`` (float32) ``(n_mels, n_fft // 2 + 1)``.

    ``dtype=np.float64`` keeps every step in float64.

    ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)`` (htk=False,
    norm="slaney", dtype float32), with the same float64 construction and the same rounding steps
    (triangles cast to float32, then scaled by the float64 Slaney norm), so it agrees with librosa
    to the last bit or so. ``fmax=None`` means ``sr / 2``. Filters that fall between two FFT bins
    (too many mels for ``n_fft``) are a ValueError rather than librosa's warning.
    """
    fmax = sr / 2 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"mel_filterbank: needs 0 <= fmin < fmax <= sr/2, "
                         f"got fmin={fmin}, fmax={fmax}, sr={sr}")
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(dtype)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # computed in float64, stored float32
    if np.any(weights.max(axis=1) <= 0):
        raise ValueError(f"mel_filterbank: {n_mels} mel bands over n_fft={n_fft} at sr={sr} leave "
                         "empty filters; use fewer mels or a larger n_fft")
    return weights


# Built once at import (well under a millisecond). The window is librosa's periodic Hann
# (scipy.signal.get_window("hann", N_FFT, fftbins=True)), applied in float64 as librosa does. The
# filterbank is librosa's float32 one, applied in float64 as librosa.feature.melspectrogram does
# to a float64 spectrum; each weight is repeated for the real and imaginary part of its bin, so the
# squared spectrum (viewed as interleaved floats) goes straight into one matmul.
_HANN_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
_MEL_BASIS_PAIRS = np.repeat(mel_filterbank().astype(np.float64), 2, axis=1)  # (N_MELS, 2 * bins)
# Each band is a contiguous run of bins (3% of the matrix is non-zero): one small dot per band over
# its own columns instead of a dense (64 x 514) @ (514 x frames) product. That product is OpenBLAS,
# multi-threaded, and next to ONNX Runtime's threads on a 2-core box it oversubscribed: 30 ms p50
# instead of 4 (measured under load); the band dots take 3.7 ms on one thread. Same float64 terms,
# summed in another order (~1e-16 relative): the float32 output was identical on every test signal.
_MEL_BANDS = []
for _row in _MEL_BASIS_PAIRS:
    _cols = np.flatnonzero(_row)
    _MEL_BANDS.append((int(_cols[0]), int(_cols[-1]) + 1, np.ascontiguousarray(_row[_cols[0]:_cols[-1] + 1])))

# Per-thread scratch for the windowed frames and their spectra (4.2 MB per calling thread), reused
# across calls. Fresh multi-MB temporaries cost ~1000 page faults per call (glibc returns them to
# the OS between calls), which more than doubled the time of a 10 s clip (4.6 ms vs 1.9 ms).
# A 10 s clip fits one block (one rfft call); longer input runs in blocks of this many frames.
_BLOCK_FRAMES = 512
_RFFT_HAS_OUT = "out" in inspect.signature(np.fft.rfft).parameters  # numpy >= 2.0
_scratch = threading.local()


def _scratch_buffers() -> tuple[np.ndarray, np.ndarray]:
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = (np.empty((_BLOCK_FRAMES, N_FFT)),
                                      np.empty((_BLOCK_FRAMES, N_FFT // 2 + 1), np.complex128))
    return buffers


def log_mel(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono samples (float, any length >= 1) -> log-mel float32 ``(N_MELS, frames)`` in dB.

    ``frames = 1 + len(wave) // HOP_LENGTH`` (501 for a 10 s clip). Equals::

        S = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=N_FFT, hop_length=HOP_LENGTH,
                                           n_mels=N_MELS, fmin=FMIN, fmax=FMAX, center=True,
                                           pad_mode="constant", power=2.0)
        librosa.power_to_db(S, ref=1.0, amin=AMIN, top_db=None)

    Centred frames (the signal is zero-padded by ``N_FFT // 2`` on both sides) as a strided view,
    Hann-windowed and transformed by one ``np.fft.rfft`` call per block of 512 frames (one call for
    a 10 s clip). The FFT runs in float64, as in librosa: numpy's float64 real FFT is also ~5x
    faster than its float32 one here (0.5 ms vs 2.7 ms for a 10 s clip).

    Accuracy against librosa in float64: below 4e-6 dB in every band (the float32 rounding of the
    output), however far below its frame's peak: pure tones, chirps and near-silence included.

    Speed (timeit, best of 20, one core of a busy 2-core machine, numpy 2.4): 1.9 ms for a 10 s
    clip (160,000 samples).

    Raises ValueError naming ``wave`` for input that is not 1-D, empty, not floating point or not
    finite.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"wave: expected 1-D mono samples, got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError("wave: empty (need at least one sample)")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"wave: expected float samples in [-1, 1], got {wave.dtype} "
                         "(scale integer PCM when decoding)")
    if not np.isfinite(wave).all():
        raise ValueError("wave: samples contain NaN or infinity")
    num_frames = 1 + wave.size // HOP_LENGTH
    padded = np.zeros(wave.size + N_FFT, dtype=np.result_type(wave.dtype, np.float32))
    padded[N_FFT // 2:N_FFT // 2 + wave.size] = wave
    # Frame t is padded[t * HOP_LENGTH : t * HOP_LENGTH + N_FFT]; the last one ends at or before
    # padded.size, so the read-only view stays in bounds.
    step = padded.strides[0]
    frames = as_strided(padded, (num_frames, N_FFT), (HOP_LENGTH * step, step), writeable=False)
    windowed_buffer, spectrum_buffer = _scratch_buffers()
    mel = np.empty((N_MELS, num_frames))
    for start in range(0, num_frames, _BLOCK_FRAMES):
        rows = min(_BLOCK_FRAMES, num_frames - start)
        windowed = np.multiply(frames[start:start + rows], _HANN_WINDOW, out=windowed_buffer[:rows])
        if _RFFT_HAS_OUT:
            spectrum = np.fft.rfft(windowed, axis=-1, out=spectrum_buffer[:rows])
        else:
            spectrum = np.fft.rfft(windowed, axis=-1)
        squares = spectrum.view(np.float64)  # (rows, 2 * bins): re^2, im^2 of each bin, in place
        np.square(squares, out=squares)
        for band, (lo, hi, weights) in enumerate(_MEL_BANDS):
            np.dot(squares[:, lo:hi], weights, out=mel[band, start:start + rows])
    np.maximum(mel, AMIN, out=mel)
    np.log10(mel, out=mel)
    mel *= 10.0  # power_to_db with ref=1.0: the 10*log10(ref) term is 0
    return mel.astype(np.float32)
