"""The in-graph log-mel front end against librosa, and its ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
librosa = pytest.importorskip("librosa")

from auditor_lite.model import audio  # noqa: E402
from auditor_lite.model.audio import LogMelSpectrogram  # noqa: E402

SR = audio.SAMPLE_RATE


def real_ish_signals() -> dict[str, np.ndarray]:
    """10-s float32 clips with the structure of real audio: harmonics, sweeps, noise, pauses."""
    rng = np.random.default_rng(0)
    t = np.arange(audio.CLIP_SAMPLES) / SR
    harmonic = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t + k) for k in range(1, 8))
    chirp = 0.1 * np.sin(2 * np.pi * (300 * t + 350 * t ** 2))
    speechy = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2 * 0.05
    mixture = harmonic + chirp + speechy + 0.01 * rng.standard_normal(t.size)
    mixture[40_000:70_000] *= 1e-3  # a near-silent pause: values down to about -90 dB
    loud = np.clip(3 * np.sign(np.sin(2 * np.pi * 97 * t)), -1, 1) * 0.9
    return {"mixture": mixture.astype(np.float32), "square": loud.astype(np.float32),
            "noise": (0.3 * rng.standard_normal(t.size)).astype(np.float32)}


def librosa_log_mel(wave: np.ndarray, pad_mode: str = audio.PAD_MODE) -> np.ndarray:
    # float64 reference: the same samples, computed without float32 rounding.
    S = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=SR, n_fft=audio.N_FFT,
                                       hop_length=audio.HOP, n_mels=audio.N_MELS, fmin=audio.FMIN,
                                       fmax=audio.FMAX, center=audio.CENTER, pad_mode=pad_mode,
                                       power=2.0)
    return librosa.power_to_db(S, ref=audio.REF, amin=audio.AMIN, top_db=audio.TOP_DB)


def run_frontend(module: LogMelSpectrogram, wave: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(wave)[None])[0].numpy()


@pytest.mark.parametrize("params", [
    dict(sr=16000, n_fft=512, n_mels=64, fmin=0.0, fmax=8000.0),
    dict(sr=16000, n_fft=400, n_mels=40, fmin=50.0, fmax=7600.0),
    dict(sr=22050, n_fft=2048, n_mels=128, fmin=0.0, fmax=None),
])
def test_mel_filterbank_equals_librosa(params):
    ours = audio.mel_filterbank(params["sr"], params["n_fft"], params["n_mels"], params["fmin"],
                                params["fmax"])
    ref = librosa.filters.mel(dtype=np.float64, **params)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_mel_scale_matches_librosa_slaney():
    hz = np.array([0.0, 31.25, 500.0, 999.9, 1000.0, 1000.1, 4321.0, 8000.0])
    np.testing.assert_allclose(audio.hz_to_mel(hz), librosa.hz_to_mel(hz, htk=False), rtol=1e-12)
    mels = np.linspace(0, 45, 11)
    np.testing.assert_allclose(audio.mel_to_hz(mels), librosa.mel_to_hz(mels, htk=False), rtol=1e-12)


def test_empty_filters_are_rejected():
    with pytest.raises(ValueError, match="empty filters"):
        audio.mel_filterbank(16000, n_fft=64, n_mels=64)


def test_dft_kernel_power_of_a_bin_centred_cosine():
    # y = A cos(2 pi k0 n / N): the Hann-windowed DFT at bin k0 is A * sum(w) / 2 = A * N / 4
    # (periodic Hann sums to N/2), its neighbours get -A * N / 8, every other bin 0.
    n_fft, k0, amplitude = 512, 40, 0.5
    frame = amplitude * np.cos(2 * np.pi * k0 * np.arange(n_fft) / n_fft)
    kernel = audio.dft_kernels(n_fft)[:, 0, :]
    spectrum = kernel @ frame
    bins = n_fft // 2 + 1
    power = spectrum[:bins] ** 2 + spectrum[bins:] ** 2
    expected = np.zeros(bins)
    expected[k0] = (amplitude * n_fft / 4) ** 2
    expected[k0 - 1] = expected[k0 + 1] = (amplitude * n_fft / 8) ** 2
    np.testing.assert_allclose(power, expected, atol=1e-9)
    # The kernel is the windowed real FFT.
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    noise = np.random.default_rng(1).standard_normal(n_fft)
    fft = np.fft.rfft(window * noise)
    np.testing.assert_allclose(kernel @ noise, np.concatenate([fft.real, fft.imag]), atol=1e-10)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_log_mel_matches_librosa_within_a_thousandth_of_a_db(pad_mode):
    module = LogMelSpectrogram(pad_mode=pad_mode).eval()
    for name, wave in real_ish_signals().items():
        ours, ref = run_frontend(module, wave), librosa_log_mel(wave, pad_mode)
        assert ours.shape == ref.shape == (audio.N_MELS, audio.num_spectrogram_frames()), name
        # Every value is compared, including the ~-90 dB bins of the pause: broadband content keeps
        # each band within 60 dB of its frame's peak, where float32 is good to ~1e-4 dB.
        err = np.abs(ours - ref)
        worst = np.unravel_index(err.argmax(), err.shape)
        assert err.max() < 1e-3, f"{name}: max error {err.max():.2e} dB at (mel, frame) {worst}"


def test_float32_error_grows_only_far_below_the_frame_peak():
    # A loud pure tone over faint noise: the documented limit of a float32 DFT (audio.py docstring).
    t = np.arange(audio.CLIP_SAMPLES) / SR
    noise = np.random.default_rng(2).standard_normal(t.size)
    module = LogMelSpectrogram()
    for noise_db in (-50, -90):
        wave = (0.9 * np.sin(2 * np.pi * 1000 * t) + 10 ** (noise_db / 20) * noise).astype(np.float32)
        ours, ref = run_frontend(module, wave), librosa_log_mel(wave)
        below_peak = ref.max(axis=0, keepdims=True) - ref
        err = np.abs(ours - ref)
        assert err[below_peak <= 60].max() < 1e-3
        assert err.max() < 1.0
    assert err[below_peak > 80].max() > 1e-3  # the limit is real: far-below bands do drift


def test_padding_mode_changes_only_the_edge_frames():
    wave = real_ish_signals()["mixture"]
    zero = run_frontend(LogMelSpectrogram(pad_mode="constant"), wave)
    mirror = run_frontend(LogMelSpectrogram(pad_mode="reflect"), wave)
    differs = np.abs(zero - mirror).max(axis=0) > 1e-3
    # Only frames whose window reaches past the clip (centre within N_FFT/2 of an end) change.
    reach = (audio.N_FFT // 2 + audio.HOP - 1) // audio.HOP
    assert differs[0] and differs[-1]
    assert not differs[reach:-reach].any()


def test_silence_is_floored_at_amin():
    out = run_frontend(LogMelSpectrogram(), np.zeros(audio.CLIP_SAMPLES, np.float32))
    np.testing.assert_array_equal(out, np.full_like(out, 10 * np.log10(audio.AMIN)))


def test_frame_count_matches_librosa():
    for n in (16000, 16001, 160000):
        S = librosa.feature.melspectrogram(y=np.zeros(n, np.float32), sr=SR, n_fft=audio.N_FFT,
                                           hop_length=audio.HOP)
        assert audio.num_spectrogram_frames(n) == S.shape[1]


def test_invalid_pad_mode():
    with pytest.raises(ValueError, match="pad_mode"):
        LogMelSpectrogram(pad_mode="edge")


def test_onnx_export_matches_torch_and_has_no_stft(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Wrapper(torch.nn.Module):  # a plain module so the exporter sees one tensor in, one out
        def __init__(self):
            super().__init__()
            self.frontend = LogMelSpectrogram(pad_mode="reflect")

        def forward(self, waveform):
            return self.frontend(waveform)

    wave = real_ish_signals()["mixture"][None]
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(Wrapper().eval(), (torch.from_numpy(wave),), str(path), dynamo=False,
                      opset_version=17, input_names=["audio"], output_names=["log_mel"])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"STFT", "DFT", "MelWeightMatrix", "Loop", "If"}, ops
    assert "Conv" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"audio": wave})[0][0]
    np.testing.assert_allclose(out, librosa_log_mel(wave[0], "reflect"), atol=1e-3, rtol=0)
    # torch and ORT sum the 512-tap DFT in different orders: up to ~3e-4 dB apart in weak bands.
    np.testing.assert_allclose(out, run_frontend(Wrapper().frontend, wave[0]), atol=1e-3, rtol=0)
