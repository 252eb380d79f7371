"""``auditor-lite ros loadtest``: the node under a camera, a microphone and a segmenter, on loopback.

It starts the node (``auditor-lite ros node --transport dds --loopback``, with ``audio_policy``:
``shift`` by default, as the node command) in its own process, and in this one a
publisher and a recorder on the same DDS domain. The publisher streams frames (rgb8, ``fps``,
``width`` x ``height``, stamped with the wall clock as a camera driver does), 0.1 s audio chunks
(S16LE 16 kHz + AudioInfo) and the expression; after ``warmup_s`` (the window's 10 s must fill)
it sends mask requests of ``masks_per_request`` masks of the newest frame at each rate in turn.
The recorder takes the results. Per rate it reports:

- ``latency`` p50/p99: the node's own ``latency_s`` (request taken -> result written, less the
  waits for the window's data: docs/streaming.md);
- ``wire`` p50/p99: request published -> result received here, less the same waits (adds DDS,
  CDR and the node's reader thread);
- ``wait`` p50: the data waits: the grid frame of the request's second and the window's audio,
  which ends at the key frame's grid time under ``shift`` (so the wait is short or zero) and at
  the end of the key second under ``wait`` (about 0.5 s);
- ``dropped``: requests with no result within ``settle_s`` plus ``dropped`` error results;
  ``errors``: other error results, by code.

Every request's arrival is also logged relative to the node's start and to its window's settle
time (its grid frame and audio published here), with its latency and whether its context was
reused; the slowest per rate are printed and ``request_log`` (``--log FILE.jsonl``) keeps all.

Frames are serialized once per distinct picture and re-stamped in place (the header stamp is at a
fixed CDR offset), requests likewise, so the publisher costs little of the 2 cores.
"""

from __future__ import annotations

import json
import math
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np

from auditor_lite.ros import messages as m
from auditor_lite.ros.audio import samples_to_audio
from auditor_lite.ros.dds_node import CdrReader, CdrWriter, DdsContext, _delete, loopback_config

STAMP_OFFSET = 4                 # CDR: the 4-byte encapsulation header, then header.stamp (sec, nanosec)
ID_WIDTH = 8                     # request ids "r0000012": fixed width, patched in place
CHUNK_S = 0.1


def _stamped(cdr: bytes, stamp_s: float) -> bytearray:
    out = bytearray(cdr)
    t = m.seconds_to_time(stamp_s)
    struct.pack_into("<iI", out, STAMP_OFFSET, t.sec, t.nanosec)
    return out


class _Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent: dict[str, tuple[int, float]] = {}      # request id -> (phase, publish time)
        self.rows: list[tuple] = []                        # (phase, msg, wire seconds)
        self.published: dict[str, float] = {}             # request id -> publish time (monotonic)
        self.frame_at: dict[int, float] = {}              # second s -> publish time of its grid frame
        self.audio_ends: list[tuple[float, float]] = []   # (chunk end stamp, publish time)

    def sent_request(self, rid: str, phase: int) -> None:
        with self.lock:
            self.sent[rid] = (phase, time.monotonic())
            self.published[rid] = self.sent[rid][1]

    def sent_frame(self, stamp: float, now: float) -> None:
        """The first frame at or after the grid time ``s + 0.5`` settles second ``s``'s frame."""
        self.frame_at.setdefault(math.floor(stamp - 0.5), now)

    def take(self, msg, now: float) -> None:
        with self.lock:
            phase, sent = self.sent.pop(msg.request_id, (None, now))
        if phase is not None:
            self.rows.append((phase, msg, now - sent))

    def settled(self, second: int, audio_end_s: float) -> float | None:
        """When the window of ``second`` was complete here: its grid frame and its audio up to
        ``second + audio_end_s`` published (monotonic time), or ``None`` if unknown."""
        frame = self.frame_at.get(second)
        audio = next((t for end, t in self.audio_ends if end >= second + audio_end_s - 1e-3), None)
        return None if frame is None or audio is None else max(frame, audio)

    def request_log(self, rates, node_started: float, audio_policy: str) -> list[dict]:
        """One row per answered request: its arrival relative to the node's start and to its
        window's settle time, its latencies and waits (ms), ``context_reused``, ``error_code``."""
        audio_end = 1.0 if audio_policy == "wait" else 0.5
        rows = []
        for phase, msg, wire in self.rows:
            sent = self.published.get(msg.request_id)
            settled = self.settled(int(msg.second), audio_end) if sent is not None else None
            rows.append(dict(request_id=msg.request_id, masks_per_s=rates[phase], second=int(msg.second),
                             since_node_start_s=None if sent is None else round(sent - node_started, 3),
                             since_settle_ms=None if settled is None else round((sent - settled) * 1e3, 1),
                             latency_ms=round(msg.latency_s * 1e3, 2), wire_ms=round(wire * 1e3, 2),
                             wait_ms=round((msg.frame_wait_s + msg.audio_wait_s) * 1e3, 2),
                             context_reused=bool(msg.context_reused), error_code=msg.error_code))
        return rows


def outliers(rows, n: int = 5) -> list[str]:
    """The ``n`` slowest requests per rate (``latency_ms``), with their arrival times."""
    lines = []
    for rate in dict.fromkeys(r["masks_per_s"] for r in rows):
        top = sorted((r for r in rows if r["masks_per_s"] == rate and not r["error_code"]),
                     key=lambda r: -r["latency_ms"])[:n]
        lines += [f"  {rate:g} masks/s: {r['request_id']} latency {r['latency_ms']:.1f} ms, wire {r['wire_ms']:.1f} ms, "
                  f"{r['since_node_start_s']} s after node start, {r['since_settle_ms']} ms after its window "
                  f"settled, context {'reused' if r['context_reused'] else 'encoded'}" for r in top]
    return lines


def _percentiles(values) -> str:
    if not len(values):
        return "   -      -  "
    p50, p99 = np.percentile(np.asarray(values) * 1e3, [50, 99])
    return f"{p50:6.1f} {p99:6.1f}"


def summarize(recorder: _Recorder, rates, published: Counter) -> list[dict]:
    rows = []
    for phase, rate in enumerate(rates):
        got = [(msg, wire) for p, msg, wire in recorder.rows if p == phase]
        codes = Counter(msg.error_code for msg, _ in got if msg.error_code)
        ok = [(msg, wire) for msg, wire in got if not msg.error_code]
        waits = [msg.frame_wait_s + msg.audio_wait_s for msg, _ in ok]
        rows.append(dict(masks_per_s=rate, requests=published[phase], results=len(got),
                         dropped=published[phase] - len(got) + codes.pop("dropped", 0), errors=dict(codes),
                         latency_s=[msg.latency_s for msg, _ in ok], wire_s=[w - x for (_, w), x in zip(ok, waits)],
                         wait_s=waits))
    return rows


def format_rows(rows) -> list[str]:
    lines = ["masks/s  requests  results  dropped   latency p50/p99 ms   wire p50/p99 ms   wait p50 s  errors"]
    for r in rows:
        wait = f"{np.median(r['wait_s']):.2f}" if r["wait_s"] else "-"
        lines.append(f"{r['masks_per_s']:7g}  {r['requests']:8d}  {r['results']:7d}  {r['dropped']:7d}   "
                     f"{_percentiles(r['latency_s'])}        {_percentiles(r['wire_s'])}     {wait:>8}    "
                     f"{r['errors'] or ''}")
    return lines


def run(domain: int, *, rates=(30, 60, 100), seconds: float = 20.0, warmup_s: float = 11.0, fps: float = 30.0,
        width: int = 640, height: int = 480, masks_per_request: int = 3, threads: int | None = None,
        model=None, audio_policy: str = "shift", settle_s: float = 5.0, node_start_s: float = 120.0,
        stop: threading.Event | None = None, request_log=None, log=print) -> list[dict]:
    """Run the load test (see the module docstring); returns one dict per rate. ``stop`` ends it early
    (what has been measured is still reported). ``request_log``: a JSONL path for one row per request
    (:meth:`_Recorder.request_log`); the slowest requests per rate are logged in any case."""
    stop = stop or threading.Event()
    cmd = [sys.executable, "-m", "auditor_lite.cli", "ros", "node", "--transport", "dds", "--loopback", "--domain", str(domain)]
    cmd += ["--threads", str(threads)] if threads else []
    cmd += ["--audio-policy", audio_policy]
    cmd += ["--model", str(model)] if model else []
    node_started = time.monotonic()
    node = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)     # our Ctrl-C is not the node's: we stop it ourselves
    recorder, published = _Recorder(), Counter()
    try:
        with DdsContext(domain, loopback_config()) as ctx:
            p, t = ctx.participant, m.TOPICS
            w = {k: CdrWriter(p, t[k].name, t[k].type, t[k]) for k in ("frames", "audio", "audio_info",
                                                                        "expression", "requests")}
            results = CdrReader(p, t["results"].name, t["results"].type, t["results"])
            try:
                log(f"loadtest: node pid {node.pid} on DDS domain {domain} (loopback); waiting for it")
                if not (w["requests"].wait_matched(1, node_start_s) and results.wait_matched(1, node_start_s)):
                    raise TimeoutError(f"loadtest: the node did not subscribe within {node_start_s:g} s")
                log(f"loadtest: the node subscribed {time.monotonic() - node_started:.1f} s after its start")
                rx = threading.Thread(target=_receive, args=(results, recorder, stop), daemon=True)
                rx.start()
                try:
                    _publish(w, recorder, published, rates, seconds, warmup_s, fps, width, height,
                             masks_per_request, stop, log)
                    end = time.monotonic() + settle_s
                    while recorder.sent and time.monotonic() < end and not stop.is_set():
                        time.sleep(0.05)
                except KeyboardInterrupt:
                    log("loadtest: interrupted; reporting what was measured")
                stop.set()
                rx.join(5.0)
            finally:
                for e in [*(x.writer for x in w.values()), results.reader]:
                    _delete(e)
    finally:
        stop.set()
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
        try:
            out, _ = node.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            out, _ = node.communicate()
        for line in (out or "").splitlines():
            if line.startswith(("stopped:", "stream:", "warm-up:")):
                log("node " + line)
    rows = recorder.request_log(rates, node_started, audio_policy)
    if request_log is not None:
        with open(request_log, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
    log("loadtest: slowest requests (node latency):")
    for line in outliers(rows):
        log(line)
    return summarize(recorder, rates, published)


def _receive(reader: CdrReader, recorder: _Recorder, stop: threading.Event) -> None:
    while not stop.is_set():
        batch = reader.take_cdr()
        now = time.monotonic()
        for data in batch:
            recorder.take(m.deserialize(data, reader.ros_type), now)
        if not batch:
            stop.wait(0.002)


def _publish(w, recorder, published, rates, seconds, warmup_s, fps, width, height, per_request, stop, log):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pictures = [m.serialize(m.array_to_image(np.roll(base, 4 * i, axis=1), 0.0, "camera")) for i in range(30)]
    masks = np.zeros((per_request, height, width), bool)
    for i in range(per_request):
        masks[i, height // 4:height // 2, (i * width) // (per_request + 1):((i + 2) * width) // (per_request + 1)] = True
    template = m.serialize(m.make_request(0.0, masks, [f"m{i}" for i in range(per_request)],
                                          request_id="r" + "0" * (ID_WIDTH - 1), frame_id="camera"))
    id_at = template.index(b"r" + b"0" * (ID_WIDTH - 1))
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(CHUNK_S * 16000)) / 16000)).astype(np.float32)
    _msg, info = samples_to_audio(wave, 1.0)
    w["audio_info"].write(info)
    w["expression"].write(m.new(m.STRING, data="the barking dog"))
    start = time.monotonic()
    epoch = time.time() - start               # stamps: wall clock, as a camera driver stamps
    schedule = [(warmup_s + i * seconds, warmup_s + (i + 1) * seconds, rate / per_request)
                for i, rate in enumerate(rates)]
    n_frame = n_audio = n_req = 0
    last_frame = epoch + start
    phase_shown = -1
    end = (schedule[-1][1] if schedule else warmup_s) + 2.0   # 2 s more stream: the last requests' data
    while not stop.is_set():
        now = time.monotonic() - start
        if now >= end:
            break
        phase = next((i for i, (a, b, _) in enumerate(schedule) if a <= now < b), None)
        if phase is not None and phase != phase_shown:
            log(f"loadtest: {rates[phase]:g} masks/s for {seconds:g} s")
            phase_shown, n_req = phase, 0
        t_frame, t_audio = n_frame / fps, (n_audio + 1) * CHUNK_S
        t_req = (schedule[phase][0] + n_req / schedule[phase][2]) if phase is not None else end
        t_next = min(t_frame, t_audio, t_req)
        if t_next > now:
            stop.wait(min(t_next - now, 0.05))
            continue
        if t_next == t_frame:
            last_frame = epoch + start + t_frame
            w["frames"].write_cdr(_stamped(pictures[n_frame % len(pictures)], last_frame))
            recorder.sent_frame(last_frame, time.monotonic())
            n_frame += 1
        elif t_next == t_audio:
            audio, _ = samples_to_audio(wave, epoch + start + n_audio * CHUNK_S)
            w["audio"].write(audio)
            recorder.audio_ends.append((epoch + start + (n_audio + 1) * CHUNK_S, time.monotonic()))
            n_audio += 1
        else:
            rid = f"r{phase}{n_req:0{ID_WIDTH - 2}d}"
            cdr = _stamped(template, last_frame)
            cdr[id_at:id_at + ID_WIDTH] = rid.encode()
            recorder.sent_request(rid, phase)
            w["requests"].write_cdr(cdr)
            published[phase] += 1
            n_req += 1

