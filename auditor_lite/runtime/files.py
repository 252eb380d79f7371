"""Decode the files a user has (frames, a WAV, mask PNGs, a video) into the audit API's arrays.

Unlike the low-level API, which takes exactly what the graph needs, the file loaders are forgiving
where the fix is unambiguous and say what they did through ``note`` (the CLI prints it): stereo is
averaged to mono and other sample rates are resampled to 16 kHz. Everything else that is wrong is a
:class:`~auditor_lite.data.schema.DataError` naming the file.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from auditor_lite.media import MAX_IMAGE_PIXELS, audio_info, load_frame, open_image
from auditor_lite.data.schema import CLIP_SAMPLES, CLIP_SECONDS, NUM_FRAMES, SAMPLE_RATE, DataError
from auditor_lite.runtime.resample import resample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MAX_CHANNELS = 32
_RGB_BITS = np.frombuffer(bytes([255, 255, 255, 0]), np.uint32)[0]   # the colour bytes of an RGBA word
Note = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _natural_key(path: Path):
    """``2.jpg`` before ``10.jpg``: digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder) -> list[Path]:
    """The clip's 10 frame images in a folder: ``0.jpg .. 9.jpg`` (the benchmark layout) if present,
    else the folder's 10 images in natural name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "frames folder not found")
    layout = [folder / f"{i}.jpg" for i in range(NUM_FRAMES)]
    images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if all(p.is_file() for p in layout):
        extra = [p.name for p in images if p not in layout]
        if extra:   # which ten did the user mean? refusing beats auditing the wrong ones
            raise DataError(folder, f"holds {', '.join(extra[:3])} besides 0.jpg .. 9.jpg; a clip is "
                            f"{NUM_FRAMES} frames (10 s at 1 fps): remove the others")
        return layout
    if len(images) != NUM_FRAMES:
        raise DataError(folder, f"found {len(images)} images; a clip is {NUM_FRAMES} frames "
                        f"(10 s at 1 fps), named 0.jpg .. 9.jpg or sorting in time order")
    return images


def load_frames_dir(folder) -> np.ndarray:
    """uint8 ``(10, H, W, 3)`` from a frames folder; frames of different sizes are an error."""
    frames = []
    for path in frame_files(folder):
        frame = load_frame(path)
        if frames and frame.shape != frames[0].shape:
            raise DataError(path, f"is {frame.shape[1]}x{frame.shape[0]}, the first frame is "
                            f"{frames[0].shape[1]}x{frames[0].shape[0]}; all frames need one size")
        frames.append(frame)
    return np.stack(frames)


def load_audio_file(path, note: Note = _quiet) -> np.ndarray:
    """The first 10 s of a sound file as float32 mono samples at 16 kHz (channels averaged, other
    rates resampled). Only that window is decoded, so a long recording costs what a clip costs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "audio file not found")
    rate, channels, duration = audio_info(path)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DataError(path, f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE // 1000}-"
                        f"{MAX_SAMPLE_RATE // 1000} kHz: not an audio recording this tool reads")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DataError(path, f"{channels} channels; at most {MAX_CHANNELS} are mixed down")
    # the window plus a little more, so that resampling sees real samples at its end, not zeros
    frames = int(math.ceil(rate * CLIP_SECONDS)) + rate // 10
    try:
        wave, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DataError(path, f"not a decodable audio file ({exc})") from None
    if wave.shape[0] == 0:
        raise DataError(path, "the audio file holds no samples")
    if duration > CLIP_SECONDS + 0.1:
        note(f"{path.name}: the first {CLIP_SECONDS} s of {duration:.1f} s used")
    if wave.shape[1] > 1:
        note(f"{path.name}: {wave.shape[1]} channels mixed down to mono")
    mono = wave.mean(axis=1, dtype=np.float32)
    if rate != SAMPLE_RATE:
        note(f"{path.name}: resampled from {rate} Hz to {SAMPLE_RATE} Hz")
        mono = resample(mono, int(rate), SAMPLE_RATE)
    return mono[:CLIP_SAMPLES] if duration > CLIP_SECONDS else mono


def load_mask_file(path) -> np.ndarray:
    """A candidate mask image as bool (H, W). The image must be two-valued: background 0 and one
    foreground value (any colour); grey ramps (soft masks, JPEG artefacts) are refused, not guessed.
    One pass over the pixels (a 12 MP mask decodes in well under a second)."""
    path = Path(path)
    image = open_image(path)
    colour_mode = {"P": "RGB", "PA": "RGB", "LA": "L", "RGBA": "RGB", "1": "L"}.get(image.mode)
    image = image.convert(colour_mode) if colour_mode else image
    if image.mode == "RGB":   # RGBX in memory: one uint32 per pixel, one comparison per pixel
        pixels = np.asarray(image.convert("RGBA")).view(np.uint32)[..., 0] & _RGB_BITS
    else:
        pixels = np.asarray(image)
        if pixels.ndim == 3:
            pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1).any(axis=2)
    foreground = pixels != 0
    values = pixels[foreground]
    if values.size and (values != values.flat[0]).any():
        distinct = len(np.unique(values)) + int(values.size < foreground.size)
        raise DataError(path, f"not a binary mask: {distinct} distinct pixel values; save the mask "
                        "with one background value 0 and one foreground value (e.g. 0/255, no JPEG)")
    return foreground


def load_mask_files(paths: Sequence) -> list[np.ndarray]:
    if not paths:
        raise DataError("--masks", "no mask files given")
    return [load_mask_file(p) for p in paths]


def mask_dir_files(folder) -> list[Path]:
    """The images of a masks folder in natural name order (``2.png`` before ``10.png``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "masks folder not found")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise DataError(folder, f"no mask images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def read_video(path, note: Note = _quiet) -> tuple[np.ndarray, np.ndarray | None]:
    """10 frames at 1 fps (uint8) and the 16 kHz mono soundtrack (None if the video has none).

    The first 10 s are used: frame t is the picture shown at t + 0.5 s (the middle of second t).
    Decoded with PyAV (``pip install 'auditor-lite[video]'``; its wheels bundle FFmpeg), else with
    an ``ffmpeg`` program on PATH.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video file not found")
    try:
        import av  # noqa: F401
    except ImportError:
        return _read_video_ffmpeg(path, note)
    return _read_video_av(path, note)


def _read_video_av(path: Path, note: Note) -> tuple[np.ndarray, np.ndarray | None]:
    import av

    try:
        with av.open(str(path)) as container:
            video = next((s for s in container.streams if s.type == "video"), None)
            if video is None:
                raise DataError(path, "holds no video stream")
            width, height = video.codec_context.width, video.codec_context.height
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(path, f"{width}x{height} video frames are more than the "
                                f"{MAX_IMAGE_PIXELS // 1_000_000} MP an input image may have")
            frames: list = [None] * NUM_FRAMES
            last = -1.0
            for frame in container.decode(video):
                if frame.time is None:
                    continue
                # the last picture shown at or before t + 0.5 s, for every t it already covers
                for t in range(NUM_FRAMES):
                    if frame.time <= t + 0.5:
                        frames[t] = frame
                last = max(last, frame.time)
                if frame.time > NUM_FRAMES - 0.5:
                    break
            frames = [f if last > t else None for t, f in enumerate(frames)]   # the video reaches second t
            if any(f is None for f in frames):
                raise DataError(path, f"only {sum(f is not None for f in frames)} of the {NUM_FRAMES} "
                                "frames found at 1 fps; a clip is 10 s long")
            pictures = np.stack([f.to_ndarray(format="rgb24") for f in frames])
        with av.open(str(path)) as container:
            audio = next((s for s in container.streams if s.type == "audio"), None)
            if audio is None:
                note(f"{path.name}: no audio track")
                return pictures, None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks, total = [], 0
            for frame in container.decode(audio):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total >= CLIP_SAMPLES:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise DataError(path, f"not a decodable video ({exc})") from None
    wave = np.concatenate(chunks).astype(np.float32)[:CLIP_SAMPLES] if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        note(f"{path.name}: the audio track holds no samples")
        return pictures, None
    return pictures, np.clip(wave, -1.0, 1.0)


def _read_video_ffmpeg(path: Path, note: Note) -> tuple[np.ndarray, np.ndarray | None]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DataError(path, "decoding a video needs PyAV (pip install 'auditor-lite[video]') or the "
                        "ffmpeg program on PATH; or give the frames and the sound yourself: --frames DIR "
                        "(10 images) --audio WAV")
    with tempfile.TemporaryDirectory(prefix="auditor-lite-video-") as tmp:
        tmp = Path(tmp)
        _ffmpeg(path, [ffmpeg, "-v", "error", "-ss", "0.5", "-i", str(path), "-t", "10", "-vf", "fps=1",
                       "-frames:v", str(NUM_FRAMES), str(tmp / "%d.png")])
        images = sorted(tmp.glob("*.png"), key=_natural_key)
        if len(images) < NUM_FRAMES:
            raise DataError(path, f"only {len(images)} frames decoded at 1 fps; a clip is 10 s long")
        frames = np.stack([load_frame(p) for p in images[:NUM_FRAMES]])
        wav = tmp / "audio.wav"
        try:
            _ffmpeg(path, [ffmpeg, "-v", "error", "-i", str(path), "-t", "10", "-vn", "-ac", "1",
                           "-ar", str(SAMPLE_RATE), str(wav)])
        except DataError:
            note(f"{path.name}: no audio track decoded")
            return frames, None
        return frames, load_audio_file(wav, note)


def _ffmpeg(path: Path, command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise DataError(path, f"ffmpeg could not decode it ({message})")
