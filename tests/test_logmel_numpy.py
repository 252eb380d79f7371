"""The numpy log-mel front end of auditor_lite.preprocess, against librosa and the in-graph one."""

from __future__ import annotations

import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from auditor_lite import preprocess
from auditor_lite.data.schema import CLIP_SAMPLES, SAMPLE_RATE
from auditor_lite.preprocess import log_mel, mel_filterbank

SR = SAMPLE_RATE


def signals() -> dict[str, np.ndarray]:
    """10-s float32 test clips: mixtures with the structure of real audio, and hard pure tones."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SR
    harmonic = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t + k) for k in range(1, 8))
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 380 * t ** 2))  # 100 Hz -> 7.7 kHz
    speechy = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2 * 0.05
    real_ish = 0.5 * harmonic + 0.3 * chirp + speechy + 0.01 * rng.standard_normal(t.size)
    real_ish[40_000:70_000] *= 1e-3  # a near-silent pause
    return {
        "tone+noise": 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size),
        "chirp": chirp,
        "real_ish": real_ish,
        # A loud pure tone over noise 90 dB down: bands ~120 dB below their frame's peak.
        "tone_over_faint_noise": 0.9 * np.sin(2 * np.pi * 1000 * t)
        + 10 ** (-90 / 20) * rng.standard_normal(t.size),
    }


@pytest.fixture(scope="module")
def librosa_log_mel():
    """librosa's log-mel (float64) with the front end's settings; librosa's JIT warmed once here."""
    librosa = pytest.importorskip("librosa", reason="librosa is the reference")

    def reference(wave: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # librosa warns when n_fft exceeds a short signal
            warnings.simplefilter("ignore", UserWarning)
            S = librosa.feature.melspectrogram(
                y=np.asarray(wave, dtype=np.float64), sr=SR, n_fft=preprocess.N_FFT,
                hop_length=preprocess.HOP_LENGTH, n_mels=preprocess.N_MELS, fmin=preprocess.FMIN,
                fmax=preprocess.FMAX, center=True, pad_mode="constant", power=2.0)
        return librosa.power_to_db(S, ref=1.0, amin=preprocess.AMIN, top_db=None)

    reference(np.zeros(4 * preprocess.N_FFT, np.float32))  # first call JIT-compiles (~20 s)
    return reference


def test_constants():
    assert (preprocess.N_FFT, preprocess.HOP_LENGTH, preprocess.N_MELS) == (512, 320, 64)
    assert (preprocess.FMIN, preprocess.FMAX, preprocess.AMIN) == (0.0, 8000.0, 1e-10)
    assert preprocess.N_FRAMES_PER_CLIP == 1 + CLIP_SAMPLES // preprocess.HOP_LENGTH == 501


def test_shape_and_dtype_of_a_clip():
    wave = np.random.default_rng(1).standard_normal(160_000).astype(np.float32) * 0.1
    out = log_mel(wave)
    assert out.shape == (preprocess.N_MELS, 1 + 160_000 // 320) == (64, 501)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.isfinite(out).all()


@pytest.mark.train
@pytest.mark.parametrize("name", list(signals()))
def test_matches_librosa_within_a_thousandth_of_a_db(librosa_log_mel, name):
    wave = signals()[name].astype(np.float32)
    ours, ref = log_mel(wave), librosa_log_mel(wave)
    assert ours.shape == ref.shape == (preprocess.N_MELS, preprocess.N_FRAMES_PER_CLIP)
    # Every band, however far below its frame's peak: the FFT runs in float64, as in librosa; what
    # remains is the float32 rounding of the output (~4e-6 dB at -100 dB).
    err = np.abs(ours - ref)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() < 1e-3, f"{name}: max error {err.max():.2e} dB at (mel, frame) {worst}"
    assert err.max() < 1e-4, f"{name}: max error {err.max():.2e} dB at (mel, frame) {worst}"


@pytest.mark.train
@pytest.mark.parametrize("num_samples", [1, 100, 319, 320, 511, 512, 513, 16_001, 560_000])
def test_any_length_matches_librosa(librosa_log_mel, num_samples):
    # 560,000 samples = 1751 frames: several 512-frame blocks and a partial last one.
    rng = np.random.default_rng(num_samples)
    wave = (0.2 * rng.standard_normal(num_samples)).astype(np.float32)
    ours, ref = log_mel(wave), librosa_log_mel(wave)
    assert ours.shape == ref.shape == (preprocess.N_MELS, 1 + num_samples // preprocess.HOP_LENGTH)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.train
def test_float64_input_is_not_rounded_to_float32(librosa_log_mel):
    wave = signals()["real_ish"]  # float64
    np.testing.assert_allclose(log_mel(wave), librosa_log_mel(wave), atol=1e-4, rtol=0)


@pytest.mark.train
@pytest.mark.parametrize("params", [
    dict(sr=16000, n_fft=512, n_mels=64, fmin=0.0, fmax=8000.0),
    dict(sr=16000, n_fft=400, n_mels=40, fmin=50.0, fmax=7600.0),
    dict(sr=22050, n_fft=2048, n_mels=128, fmin=0.0, fmax=None),
])
def test_mel_filterbank_equals_librosa(params):
    librosa = pytest.importorskip("librosa", reason="librosa is the reference")
    ours = mel_filterbank(**params)
    ref = librosa.filters.mel(**params)  # float32, Slaney scale and norm
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)


def test_mel_filterbank_rejects_bad_ranges():
    with pytest.raises(ValueError, match="empty filters"):
        mel_filterbank(16000, n_fft=64, n_mels=64)
    with pytest.raises(ValueError, match="fmin"):
        mel_filterbank(16000, fmin=4000.0, fmax=2000.0)
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(16000, fmax=9000.0)


def test_silence_is_floored_at_amin():
    out = log_mel(np.zeros(CLIP_SAMPLES, np.float32))
    np.testing.assert_array_equal(out, np.full_like(out, 10 * np.log10(preprocess.AMIN)))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 16000), np.float32), "1-D"),
    (np.float32(0.5), "1-D"),
    (np.zeros(0, np.float32), "empty"),
    (np.array([0.1, np.nan, 0.2], np.float32), "NaN or infinity"),
    (np.array([0.1, np.inf], np.float32), "NaN or infinity"),
    (np.zeros(16000, np.int16), "float"),
])
def test_bad_input_names_the_argument(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        log_mel(bad)
    assert str(info.value).startswith("wave:")


def test_threads_get_their_own_scratch():
    waves = [w.astype(np.float32) for w in signals().values()]
    expected = [log_mel(w) for w in waves]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(log_mel, waves * 3))
    for i, out in enumerate(got):
        np.testing.assert_array_equal(out, expected[i % len(waves)])


def test_preprocess_stays_free_of_torch_and_librosa():
    code = ("import sys, auditor_lite.preprocess as p, numpy as np; p.log_mel(np.zeros(16000)); "
            "bad = {'torch', 'librosa', 'scipy'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

