"""Every bad input the runtime can be handed gets its own clear error; file decoding; resampling."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from auditor_lite.data.schema import CLIP_SAMPLES, DataError
from auditor_lite.runtime import files
from auditor_lite.runtime.inputs import (InputError, check_audio, check_expression, check_frame_index,
                                         check_frames, check_masks)
from auditor_lite.runtime.resample import resample

FRAMES = np.zeros((10, 16, 16, 3), np.uint8)
VOICE = (0.1 * np.sin(np.arange(3 * 16000) / 7.0)).astype(np.float32)  # 3 s, clearly audible


# ------------------------------------------------------------------------------ frames
@pytest.mark.parametrize("frames,pattern", [
    (np.zeros((9, 16, 16, 3), np.uint8), "expected 10 frames .* got 9"),
    (np.zeros((10, 16, 16), np.uint8), r"expected 10 RGB frames shaped \(10, H, W, 3\), got shape \(10, 16, 16\)"),
    (np.zeros((10, 16, 16, 4), np.uint8), r"expected 10 RGB frames .* got shape \(10, 16, 16, 4\)"),
    (np.zeros((10, 4, 16, 3), np.uint8), "frames are 16x4; need at least 8x8 pixels"),
    (np.zeros((10, 16, 16, 3), np.int32), r"expected uint8 \(0..255\) or float \(0..1\) pixels, got int32"),
    (np.full((10, 16, 16, 3), 2.0, np.float32), r"float pixels must lie in \[0, 1\]"),
])
def test_bad_frames(frames, pattern):
    with pytest.raises(InputError, match=f"^frames: {pattern}"):
        check_frames(frames)


def test_nan_frame_is_named_and_float_frames_are_scaled():
    frames = np.full((10, 16, 16, 3), 0.5, np.float32)
    frames[6, 3, 3, 1] = np.nan
    with pytest.raises(InputError, match="frame 6 contains NaN"):
        check_frames(frames)
    frames[6, 3, 3, 1] = 1.0
    out = check_frames(frames)
    assert out.dtype == np.uint8 and out[0, 0, 0, 0] == 128 and out[6, 3, 3, 1] == 255  # rint(127.5)


@pytest.mark.parametrize("value", [10, -1, True, 2.0])
def test_bad_frame_index(value):
    with pytest.raises(InputError, match="^frame_index: "):
        check_frame_index(value)


# ------------------------------------------------------------------------------ masks
def test_masks_accept_bool_01_0255_and_report_empty_ones():
    shape = (16, 16)
    a = np.zeros(shape, bool)
    a[2:5, 2:5] = True
    stack, empty = check_masks([a, a.astype(np.uint8), a.astype(np.uint8) * 255, a.astype(np.float32),
                                np.zeros(shape, np.uint8)], shape)
    assert stack.dtype == bool and stack.shape == (5, 16, 16) and empty == [4]
    assert all((stack[i] == a).all() for i in range(4))
    single, _ = check_masks(a, shape)
    assert single.shape == (1, 16, 16)


def test_a_bool_mask_stack_of_the_frames_size_is_taken_without_a_copy():
    masks = np.zeros((3, 16, 16), bool)
    masks[0, 1:4, 1:4] = True
    masks[2].view(np.uint8)[5, 5] = 255                  # a non-canonical byte still counts as set
    stack, empty = check_masks(masks, (16, 16))
    assert stack is masks and empty == [1]


@pytest.mark.parametrize("masks,pattern", [
    ([], "^masks: no masks given"),
    ("mask.png", "^masks: expected an array or a list"),
    (np.zeros((2, 3, 16, 16), bool), r"^masks: expected \(H, W\) or \(N, H, W\)"),
    ([np.zeros((16, 16), bool), np.zeros((16, 12), bool)], r"^masks\[1\]: is 12x16 but its frame is 16x16"),
    ([np.zeros((16, 16, 3), np.uint8)], r"^masks\[0\]: expected a 2-D"),
    ([np.array([[0, 128], [255, 0]] * 8, np.uint8).repeat(8, axis=1)], r"^masks\[0\]: not a binary mask \(values 0, 128, 255\)"),
    ([np.full((16, 16), 0.7)], r"^masks\[0\]: not a binary mask"),
    ([np.full((16, 16), np.nan)], r"^masks\[0\]: contains NaN"),
])
def test_bad_masks(masks, pattern):
    with pytest.raises(InputError, match=pattern):
        check_masks(masks, (16, 16))


# ------------------------------------------------------------------------------ audio
def test_audio_is_padded_or_cut_to_ten_seconds():
    padded = check_audio(VOICE)
    assert padded.shape == (CLIP_SAMPLES,) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[:len(VOICE)], VOICE)
    assert not padded[len(VOICE):].any()
    long = np.tile(VOICE, 5)  # 15 s
    np.testing.assert_array_equal(check_audio(long), long[:CLIP_SAMPLES])


@pytest.mark.parametrize("wave,rate,pattern", [
    (VOICE, 44100, "sample rate 44100 Hz; the model needs 16000 Hz"),
    (np.stack([VOICE, VOICE], axis=1), 16000, r"got 2 channels \(shape \(48000, 2\)\); pass mono"),
    (np.stack([VOICE, VOICE]), 16000, "got 2 channels"),
    ((VOICE * 32767).astype(np.int16), 16000, "expected float samples .* got int16"),
    (np.where(np.arange(len(VOICE)) == 5, np.nan, VOICE), 16000, "samples contain NaN or infinity"),
    (VOICE[:8000], 16000, r"0.50 s is too short; a clip needs at least 1 s"),
    (np.zeros(16000 * 10, np.float32), 16000, "the audio is silent .* allow_silent=True"),
    (VOICE * 20, 16000, r"samples must lie in \[-1, 1\], peak is 2"),
])
def test_bad_audio(wave, rate, pattern):
    with pytest.raises(InputError, match=f"^audio: {pattern}"):
        check_audio(wave, rate)


def test_silent_audio_is_accepted_on_request():
    assert not check_audio(np.zeros(16000 * 2, np.float32), allow_silent=True).any()


# ------------------------------------------------------------------------------ expression
@pytest.mark.parametrize("text,pattern", [
    ("", "is empty"), ("   \n\t", "is empty"), (None, "expected text, got NoneType"),
    ("word " * 300, "1499 characters is too long"),
    ("the dog \ud800 barking", "is not valid Unicode \\(character 8"),
])
def test_bad_expression(text, pattern):
    with pytest.raises(InputError, match=f"^expression: {pattern}"):
        check_expression(text)


def test_expression_is_stripped():
    assert check_expression("  the red whistle \n") == "the red whistle"


@pytest.fixture(scope="module")
def auditor():
    from auditor_lite.runtime import Auditor

    return Auditor.load(intra_op_threads=1)      # the packaged model: no torch needed


def test_overlong_tokenisation_warns_and_truncates(auditor):
    long_text = "x " * 300  # 600 characters: allowed, but 302 tokens with [CLS] and [SEP]
    with pytest.warns(UserWarning, match="longer than 256 tokens, cut to the first 256"):
        auditor.embed_text(long_text)
    # Cut at 256 tokens: more words beyond the cut do not change the embedding.
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(auditor.embed_text(long_text + "drum"), auditor.embed_text(long_text))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auditor.embed_text("the xylophone on the left")
    assert not caught


def test_bad_input_reaches_the_caller_before_any_graph_runs(auditor, monkeypatch):
    frames = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    good_mask = np.zeros((16, 16), bool)
    good_mask[4:9, 4:9] = True
    runs = []
    for graph in auditor.graphs.values():
        monkeypatch.setattr(graph, "run", lambda *args, **kwargs: runs.append(args))
    with pytest.raises(InputError, match="^audio: "):
        auditor.audit(frames, np.stack([VOICE, VOICE], 1), "the dog", [good_mask], frame_index=0)
    with pytest.raises(InputError, match=r"^masks\[0\]: is 8x8"):
        auditor.audit(frames, VOICE, "the dog", [np.ones((8, 8), bool)], frame_index=0)
    with pytest.raises(InputError, match="^expression: "):
        auditor.audit(frames, VOICE, "  ", [good_mask], frame_index=0)
    with pytest.raises(InputError, match="^frame_index: "):
        auditor.audit(frames, VOICE, "the dog", [good_mask], frame_index=10)
    assert runs == []


# ------------------------------------------------------------------------------ files
def write_frames(folder, count=10, size=(24, 24), names="{}.jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        Image.fromarray(np.full((*size, 3), 20 * t, np.uint8)).save(folder / names.format(t))
    return folder


def test_frames_folder_layouts(tmp_path):
    assert files.load_frames_dir(write_frames(tmp_path / "a")).shape == (10, 24, 24, 3)
    # Any 10 images in natural order: frame_2 before frame_10.
    natural = write_frames(tmp_path / "b", names="frame_{}.png")
    loaded = files.load_frames_dir(natural)
    assert [int(x) for x in loaded[:, 0, 0, 0]] == [20 * t for t in range(10)]
    with pytest.raises(DataError, match="found 9 images; a clip is 10 frames"):
        files.load_frames_dir(write_frames(tmp_path / "c", count=9))
    mixed = write_frames(tmp_path / "d")
    Image.fromarray(np.zeros((30, 24, 3), np.uint8)).save(mixed / "4.jpg")
    with pytest.raises(DataError, match=r"4\.jpg: is 24x30, the first frame is 24x24"):
        files.load_frames_dir(mixed)
    corrupt = write_frames(tmp_path / "e")
    (corrupt / "7.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"7\.jpg: not a readable image"):
        files.load_frames_dir(corrupt)


def test_audio_file_mixdown_and_resampling(tmp_path):
    notes = []
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([VOICE, -VOICE * 0.5], 1), 16000, subtype="FLOAT")
    mono = files.load_audio_file(stereo, notes.append)
    np.testing.assert_allclose(mono, VOICE * 0.25, atol=1e-6)
    assert notes == ["stereo.wav: 2 channels mixed down to mono"]
    rate44 = tmp_path / "cd.wav"
    t = np.arange(44100 * 2) / 44100
    sf.write(rate44, 0.5 * np.sin(2 * np.pi * 440 * t), 44100, subtype="FLOAT")
    notes.clear()
    wave = files.load_audio_file(rate44, notes.append)
    assert notes == ["cd.wav: resampled from 44100 Hz to 16000 Hz"] and len(wave) == 32000
    n = np.arange(32000)
    np.testing.assert_allclose(wave[100:-100], 0.5 * np.sin(2 * np.pi * 440 * n / 16000)[100:-100], atol=1e-3)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnope")
    with pytest.raises(DataError, match=r"bad\.wav: not a decodable audio file"):
        files.load_audio_file(tmp_path / "bad.wav")
    with pytest.raises(DataError, match="audio file not found"):
        files.load_audio_file(tmp_path / "missing.wav")


def test_mask_files_must_be_two_valued(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[3:9, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "ok.png")
    palette = Image.fromarray((mask > 0).astype(np.uint8)).convert("P")
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "empty.png")
    loaded = files.load_mask_files([tmp_path / "ok.png", tmp_path / "palette.png", tmp_path / "empty.png"])
    assert (loaded[0] == (mask > 0)).all() and (loaded[1] == (mask > 0)).all() and not loaded[2].any()
    soft = (np.linspace(0, 255, 256).reshape(16, 16)).astype(np.uint8)
    Image.fromarray(soft).save(tmp_path / "soft.png")
    with pytest.raises(DataError, match=r"soft\.png: not a binary mask: 256 distinct pixel values"):
        files.load_mask_file(tmp_path / "soft.png")
    Image.fromarray(mask).save(tmp_path / "lossy.jpg", quality=30)
    with pytest.raises(DataError, match=r"lossy\.jpg: not a binary mask"):
        files.load_mask_file(tmp_path / "lossy.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        files.load_mask_file(tmp_path / "broken.png")


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000)).save(bomb)      # 48 MP of zeros: a few kB on disk
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb\.png: 8000x6000 pixels is more than the 40 MP"):
        files.load_mask_file(bomb)
    with pytest.raises(DataError, match=r"bomb\.png: 8000x6000 pixels"):
        files.load_frame(bomb)


def test_colour_masks_with_two_foreground_colours_are_refused(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[1:3, 1:3] = (200, 10, 10)
    Image.fromarray(rgb).save(tmp_path / "one.png")
    assert files.load_mask_file(tmp_path / "one.png").sum() == 4
    rgb[5:7, 5:7] = (200, 10, 11)
    Image.fromarray(rgb).save(tmp_path / "two.png")
    with pytest.raises(DataError, match=r"two\.png: not a binary mask: 3 distinct pixel values"):
        files.load_mask_file(tmp_path / "two.png")


@pytest.mark.parametrize("rate,pattern", [(999_983, "sample rate 999983 Hz is outside 8-192 kHz"),
                                          (4000, "sample rate 4000 Hz is outside 8-192 kHz")])
def test_implausible_sample_rates_are_refused_before_decoding(tmp_path, rate, pattern):
    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros(rate // 10, np.float32), rate, subtype="FLOAT")
    with pytest.raises(DataError, match=rf"odd\.wav: {pattern}"):
        files.load_audio_file(path)


def test_only_the_first_ten_seconds_of_a_long_recording_are_decoded(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, np.full(44100 * 60, 0.25, np.float32), 44100, subtype="FLOAT")
    read = []
    real_read = files.sf.read
    monkeypatch.setattr(files.sf, "read", lambda *a, **k: read.append(k.get("frames")) or real_read(*a, **k))
    notes = []
    wave = files.load_audio_file(path, notes.append)
    assert len(wave) == CLIP_SAMPLES and read == [44100 * 10 + 4410]
    np.testing.assert_allclose(wave[100:-100], 0.25, atol=1e-3)   # real samples to the window's end
    assert notes[0] == "long.wav: the first 10 s of 60.0 s used"


def test_resampling_coprime_rates_keeps_the_phase_table_bounded():
    from auditor_lite.runtime import resample as module

    rate = 191_999                                   # coprime with 16000: 16000 exact phases
    t = np.arange(rate // 2) / rate
    out = resample(0.5 * np.sin(2 * np.pi * 1000 * t), rate, 16000)
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 16000)
    np.testing.assert_allclose(out[200:-200], ideal[200:-200], atol=1e-3)
    assert module._phase_filters(16000, rate, module.MAX_PHASES).nbytes < 30e6


def test_video_without_a_decoder_says_what_to_do(tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    monkeypatch.setitem(sys.modules, "av", None)          # PyAV not installed
    monkeypatch.setattr(files.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"clip\.mp4: decoding a video needs PyAV .* --frames DIR"):
        files.read_video(video)


def _write_video(path, seconds=12.0, fps=2, rate=22050, audio=True):
    """A small video whose picture k is grey level 10 k, with a 440 Hz stereo tone."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        sound = None
        if audio:                                  # every stream before the first packet
            sound = out.add_stream("pcm_s16le", rate=rate)
            sound.layout = "stereo"
        for k in range(int(seconds * fps)):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * k, np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            t = np.arange(int(rate * seconds)) / rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            for start in range(0, len(wave), 1024):
                chunk = np.repeat(wave[start:start + 1024, None], 2, 1).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
                frame.sample_rate = rate
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)


@pytest.mark.video
def test_video_is_decoded_with_pyav_at_one_frame_per_second(tmp_path):
    video = tmp_path / "clip.mkv"
    _write_video(video)
    frames, wave = files.read_video(video)
    assert frames.shape == (10, 48, 64, 3) and frames.dtype == np.uint8
    # frame t is the picture shown at t + 0.5 s: picture k = 2 t + 1 at 2 fps, grey 20 t + 10
    np.testing.assert_allclose(frames[:, 20:28, 28:36].mean((1, 2, 3)), 20 * np.arange(10) + 10, atol=4)
    assert wave.shape == (CLIP_SAMPLES,) and wave.dtype == np.float32
    ideal = 0.3 * np.sin(2 * np.pi * 440 * np.arange(CLIP_SAMPLES) / 16000)
    assert np.corrcoef(wave[1000:-1000], ideal[1000:-1000])[0, 1] > 0.99


@pytest.mark.video
def test_video_problems_are_named(tmp_path):
    pytest.importorskip("av")
    short, silent, broken = tmp_path / "short.mkv", tmp_path / "silent.mkv", tmp_path / "broken.mkv"
    _write_video(short, seconds=4)
    with pytest.raises(DataError, match=r"short\.mkv: only 4 of the 10 frames found at 1 fps"):
        files.read_video(short)
    _write_video(silent, audio=False)
    notes = []
    frames, wave = files.read_video(silent, notes.append)
    assert wave is None and notes == ["silent.mkv: no audio track"]
    broken.write_bytes(b"\x1a\x45\xdf\xa3 not a matroska file" * 20)
    with pytest.raises(DataError, match=r"broken\.mkv: not a decodable video"):
        files.read_video(broken)


# ------------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_tone_matches_the_ideal_one(rate):
    t = np.arange(rate) / rate  # 1 s
    out = resample(0.5 * np.sin(2 * np.pi * 1000 * t), rate, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(out[200:-200], ideal[200:-200], atol=1e-3)  # edges see zero padding


def test_resampling_removes_what_16k_cannot_hold():
    t = np.arange(44100) / 44100
    out = resample(0.5 * np.sin(2 * np.pi * 11000 * t), 44100, 16000)  # above 8 kHz Nyquist: must vanish
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 1e-3  # an aliasing resampler leaves ~0.35 (a 5 kHz tone)
    same = np.arange(10, dtype=np.float64)
    np.testing.assert_array_equal(resample(same, 16000, 16000), same.astype(np.float32))
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 10)), 44100, 16000)


def test_the_session_resizes_over_the_graphs_threads_with_the_same_numbers(auditor, monkeypatch):
    import os

    from auditor_lite.preprocess import prepare_frames, prepare_masks

    assert auditor.preprocess_threads == 1                     # loaded with intra_op_threads=1
    for configured, expected in [(64, os.cpu_count()), (None, os.cpu_count()), (2, min(2, os.cpu_count()))]:
        monkeypatch.setattr(auditor.backend_impl, "intra_op_threads", configured)
        assert auditor.preprocess_threads == expected
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (10, 720, 1280, 3), dtype=np.uint8)
    session = auditor.session("the dog", frames, VOICE)
    assert session._threads == min(2, os.cpu_count())
    np.testing.assert_array_equal(session._inputs()["frames"], prepare_frames(frames, 128))
    masks = rng.random((4, 720, 1280)) > 0.5
    np.testing.assert_array_equal(prepare_masks(masks, 128, threads=session._threads), prepare_masks(masks, 128))


@pytest.mark.parametrize("height,width", [(96, 96), (128, 128), (200, 300), (720, 1280)])
def test_the_key_frame_is_the_frames_tensors_slice(height, width):
    """ClipSession takes the key frame's tensor from the frames tensor when their sizes agree: the
    two must be the same numbers."""
    from auditor_lite.preprocess import prepare_frames, prepare_key_frame

    frames = np.random.default_rng(height).integers(0, 256, (10, height, width, 3), dtype=np.uint8)
    tensor = prepare_frames(frames, 128)
    for k in (0, 4, 9):
        assert np.array_equal(tensor[:, k], prepare_key_frame(frames[k], 128))
