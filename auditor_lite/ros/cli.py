"""``auditor-lite ros``: the auditor as a ROS 2 node over DDS (docs/ros_node.md), bags of an auditor
stream and their offline replay (docs/ros_bags.md).

Imported only when ``auditor-lite ros ...`` runs; rosbags (and the runtime) only inside the commands,
so ``auditor-lite ros --help`` works without the ``ros`` extra.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

STORAGE_CHOICES = ("sqlite3", "mcap")


def _one_line_errors(command):
    """Input, bag and model errors as one-line click errors (no traceback)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            from auditor_lite.data.schema import DataError
            from auditor_lite.manifest import ManifestError
            from auditor_lite.runtime.auditor import ModelNotFoundError
        except ImportError as exc:  # pragma: no cover - a broken installation
            raise click.ClickException(str(exc)) from None
        try:
            return command(*args, **kwargs)
        except ImportError as exc:
            raise click.ClickException(f"{exc} (install the ros extra: pip install 'auditor-lite[ros]')") from None
        except (DataError, ManifestError, ModelNotFoundError, ValueError, OSError, TimeoutError) as err:
            raise click.ClickException(" ".join(str(err).split())) from None
    return wrapper


def _domain(domain: int | None) -> int:
    """--domain, else $ROS_DOMAIN_ID, else 0."""
    import os

    if domain is None:
        value = os.environ.get("ROS_DOMAIN_ID", "0")
        if not value.isdigit() or int(value) > 232:
            raise click.ClickException(f"ROS_DOMAIN_ID={value!r}: expected an integer 0-232 (or pass --domain)")
        domain = int(value)
    return domain


def _dds_context(domain: int, loopback: bool):
    """The DDS domain: 127.0.0.1 only with --loopback, else the network configuration a ROS 2
    process would use ($CYCLONEDDS_URI; the syntax dds_create_domain takes), else Cyclone's defaults."""
    import os

    from auditor_lite.ros.dds_node import DdsContext, loopback_config

    return DdsContext(domain, loopback_config() if loopback else (os.environ.get("CYCLONEDDS_URI") or "<CycloneDDS/>"))


DOMAIN_OPTION = click.option("--domain", type=click.IntRange(0, 232), default=None,
                             help="DDS domain id [$ROS_DOMAIN_ID, else 0].")
LOOPBACK_OPTION = click.option("--loopback", is_flag=True,
                               help="Keep all DDS traffic on 127.0.0.1 (tests, a single machine); default: Cyclone "
                                    "DDS's own network configuration ($CYCLONEDDS_URI), as ROS 2 uses it.")


AUDIO_POLICY_OPTION = click.option(
    "--audio-policy", type=click.Choice(["shift", "wait"]), default="shift", show_default=True,
    help="shift: a request is audited at once against the newest complete grid window, its audio ending "
         "at the key frame (0.5 s earlier than in training); wait: the audio runs to the end of the key "
         "second, as in training, waited for up to 1 s (reported apart from latency). docs/streaming.md.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ros():
    """ROS 2: the auditor node over DDS, and bags of a camera + microphone + mask-request stream
    audited offline (the ros extra; no ROS installation needed)."""


@ros.command("make-bag")
@click.option("--clip", "clip_dir", type=click.Path(path_type=Path), required=True,
              help="Clip folder in the sample-clip layout (frames/, audio.wav, expression.txt, masks/, truth.json).")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="New bag folder to write.")
@click.option("--storage", type=click.Choice(STORAGE_CHOICES), default=None,
              help="Bag storage (default: mcap for a name ending .mcap, else sqlite3).")
@click.option("--fps", type=click.FloatRange(min=1.0, max=60.0), default=10.0, show_default=True,
              help="Camera rate of the streamed frames.")
@click.option("--chunk", "chunk_s", type=click.FloatRange(min=0.01, max=1.0), default=0.1, show_default=True,
              help="Audio chunk length in seconds.")
@_one_line_errors
def make_bag(clip_dir: Path, out: Path, storage: str | None, fps: float, chunk_s: float):
    """Write a bag streaming a clip: frames, audio (+ AudioInfo), the expression and one mask request
    at the key frame."""
    from auditor_lite.benchmark.variants import load_clip
    from auditor_lite.ros import bags

    if not clip_dir.is_dir():
        raise click.ClickException(f"{clip_dir}: --clip is not a folder")
    clip = load_clip(clip_dir)
    if not clip.masks:
        raise click.ClickException(f"{clip_dir / 'masks'}: no masks to request")
    path = bags.write_bag(out, bags.clip_messages(clip, fps=fps, chunk_s=chunk_s), storage=storage)
    click.echo(f"wrote {path} ({bags.storage_of(path, storage)}): {len(clip.masks)} masks at frame "
               f"{clip.frame_index}")


@ros.command("sample-bag")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--storage", type=click.Choice(STORAGE_CHOICES), default=None,
              help="Bag storage (default: mcap for a name ending .mcap, else sqlite3).")
def sample_bag(out: Path, storage: str | None):
    """Write a bag of the bundled sample clip to OUT (`make-bag --clip` of the sample, 10 fps)."""
    from auditor_lite.audit_cli import SAMPLE_CLIP

    make_bag.callback(SAMPLE_CLIP, out, storage, 10.0, 0.1)


@ros.command("replay")
@click.option("--bag", "bag", type=click.Path(path_type=Path), required=True, help="Bag to audit.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Results: FILE.jsonl (one JSON object per result) or a new bag folder.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: the packaged model).")
@click.option("--storage", type=click.Choice(STORAGE_CHOICES), default=None,
              help="Storage of a results bag (default: mcap for a name ending .mcap, else sqlite3).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--timings", is_flag=True, help="Keep latency and wait times (they vary run to run).")
@AUDIO_POLICY_OPTION
@_one_line_errors
def replay_cmd(bag: Path, out: Path, model: Path | None, storage: str | None, threads: int | None, timings: bool,
               audio_policy: str):
    """Audit a bag offline, as the node would: one AuditResult per mask request."""
    from auditor_lite.ros import bags
    from auditor_lite.runtime import Auditor

    if out.suffix == ".jsonl" and storage is not None:
        raise click.ClickException(f"{out}: --storage applies to a results bag, not a .jsonl file")
    if out.exists():
        raise click.ClickException(f"{out}: --out already exists (choose a new name)")
    if not bag.exists():
        raise click.ClickException(f"{bag}: --bag not found")
    if model is not None and not model.is_dir():
        raise click.ClickException(f"{model}: --model is not a folder")
    auditor = Auditor.load(model, intra_op_threads=threads)
    summary = bags.replay(bag, out, auditor, storage=storage, timings=timings, audio_policy=audio_policy)
    ok = sum(1 for r in summary.results if not r.error_code)
    click.echo(f"wrote {summary.out}: {len(summary.results)} results ({ok} audited), "
               f"{summary.counts['errors']} input errors")
    for line in summary.errors[:5]:
        click.echo(f"  input error: {line}", err=True)


def _transport(transport: str, dds_options: bool) -> str:
    """--transport: ``auto`` is rclpy when it is importable (a sourced ROS 2 workspace) and no DDS
    option (--domain, --loopback) was given, else dds."""
    import importlib.util

    if transport == "auto":
        return "rclpy" if not dds_options and importlib.util.find_spec("rclpy") is not None else "dds"
    if transport == "rclpy" and importlib.util.find_spec("rclpy") is None:
        raise click.ClickException("--transport rclpy: rclpy is not importable (source a ROS 2 installation, "
                                   "e.g. /opt/ros/humble/setup.bash, or use --transport dds)")
    return transport


@ros.command("node")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Model directory (default: the packaged model).")
@click.option("--transport", type=click.Choice(["auto", "dds", "rclpy"]), default="auto", show_default=True,
              help="rclpy: an rclpy node (needs a ROS 2 installation); dds: Cyclone DDS directly (no ROS 2 "
                   "needed); auto: rclpy when it is importable and neither --domain nor --loopback is given, "
                   "else dds.")
@DOMAIN_OPTION
@LOOPBACK_OPTION
@click.option("--seconds", type=click.FloatRange(min=0.0), default=None,
              help="Stop after this long (default: run until Ctrl-C).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads.")
@AUDIO_POLICY_OPTION
@_one_line_errors
def node_cmd(model: Path | None, transport: str, domain: int | None, loopback: bool, seconds: float | None,
             threads: int | None, audio_policy: str):
    """Run the auditor as a ROS 2 node (docs/ros_node.md): frames, audio, expression and mask
    requests in, one AuditResult per request out."""
    import time

    from auditor_lite.ros import messages
    from auditor_lite.runtime import Auditor

    transport = _transport(transport, domain is not None or loopback)
    if model is not None and not model.is_dir():
        raise click.ClickException(f"{model}: --model is not a folder")
    if transport == "rclpy" and (domain is not None or loopback):
        raise click.ClickException("--domain/--loopback: the rclpy transport takes $ROS_DOMAIN_ID and the "
                                   "RMW's own configuration")
    domain = _domain(domain)
    auditor = Auditor.load(model, intra_op_threads=threads)
    topics = ", ".join(f"{t.name} ({role})" for role, t in messages.TOPICS.items())
    if transport == "rclpy":
        _rclpy_node(auditor, audio_policy, seconds, topics)
        return
    from auditor_lite.ros.dds_node import AuditorNode

    with _dds_context(domain, loopback) as context:
        node = AuditorNode(auditor, context, audio_policy=audio_policy)
        _startup(node)
        click.echo(f"auditor node on DDS domain {domain}{' (loopback)' if loopback else ''}, audio policy "
                   f"{audio_policy}: {topics}")
        started = time.monotonic()
        try:
            while seconds is None or time.monotonic() - started < seconds:
                time.sleep(0.1 if seconds is None else min(0.1, max(0.0, seconds - (time.monotonic() - started))))
        except KeyboardInterrupt:
            pass
        finally:
            node.close()
        _stopped(node)


def _startup(node) -> None:
    parts = [f"graphs {node.startup['graphs_s'] * 1e3:.0f} ms"]
    parts += [f"CDR codecs {node.startup['codecs_s'] * 1e3:.0f} ms"] if "codecs_s" in node.startup else []
    click.echo(f"warm-up: {', '.join(parts)} (before subscribing)")


def _stopped(node) -> None:
    stats = node.stats
    click.echo("stopped: " + ", ".join(f"{k} {v}" for k, v in stats.items() if k != "stream"))
    click.echo("stream: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["stream"].items())))


def _rclpy_node(auditor, audio_policy: str, seconds: float | None, topics: str) -> None:
    import rclpy

    from auditor_lite.ros.rclpy_node import RclpyAuditorNode

    rclpy.init()
    try:
        node = RclpyAuditorNode(auditor, audio_policy=audio_policy)
        _startup(node)
        click.echo(f"auditor rclpy node /{node.node.get_name()}, audio policy {audio_policy}: {topics}")
        try:
            node.spin(seconds)
        except KeyboardInterrupt:
            pass
        finally:
            node.close()
        _stopped(node)
    finally:
        if rclpy.ok():
            rclpy.shutdown()


@ros.command("play")
@click.argument("bag", type=click.Path(path_type=Path))
@click.option("--rate", type=click.FloatRange(min=0.01, max=100.0), default=1.0, show_default=True,
              help="Speed factor of the bag's log times.")
@click.option("--wait-subscribers", "wait_s", type=click.FloatRange(min=0.0), default=5.0, show_default=True,
              help="Seconds to wait for a subscriber on each RELIABLE topic before the first message.")
@DOMAIN_OPTION
@LOOPBACK_OPTION
@_one_line_errors
def play_cmd(bag: Path, rate: float, wait_s: float, domain: int | None, loopback: bool):
    """Publish a bag's messages live over DDS at its pace (like ros2 bag play); Ctrl-C stops."""
    import threading

    from auditor_lite.ros import live

    if not bag.exists():
        raise click.ClickException(f"{bag}: BAG not found")
    stop = threading.Event()
    with _dds_context(_domain(domain), loopback) as context:
        try:
            counts = live.play(bag, context.participant, rate=rate, wait_subscribers_s=wait_s, stop=stop,
                               log=lambda line: click.echo(line, err=True))
        except KeyboardInterrupt:
            stop.set()
            click.echo("interrupted", err=True)
            return
    click.echo("published: " + ", ".join(f"{topic} {n}" for topic, n in counts.items()))


@ros.command("echo")
@click.argument("topic")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many messages.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.0), default=None,
              help="Stop after this many seconds (default: --count, else Ctrl-C).")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="FILE.jsonl to write.")
@click.option("--type", "msgtype", default=None, help="pkg/msg/Name, for a topic that is not a default one.")
@DOMAIN_OPTION
@LOOPBACK_OPTION
@_one_line_errors
def echo_cmd(topic: str, count: int | None, timeout_s: float | None, out: Path, msgtype: str | None,
             domain: int | None, loopback: bool):
    """Record what arrives on TOPIC as JSON lines (like ros2 topic echo); Ctrl-C stops."""
    import threading

    from auditor_lite.ros import live

    if out.exists():
        raise click.ClickException(f"{out}: --out already exists (choose a new name)")
    if not out.parent.is_dir():
        raise click.ClickException(f"{out}: the folder {out.parent} does not exist")
    stop = threading.Event()
    got = 0
    with _dds_context(_domain(domain), loopback) as context:
        try:
            got = live.echo(context.participant, topic, out, count=count, timeout_s=timeout_s, msgtype=msgtype,
                            stop=stop)
        except KeyboardInterrupt:
            stop.set()
    click.echo(f"wrote {out}: {got if got else 'no'} messages" + (f" of {count}" if count else ""))
    if count and got < count:
        raise SystemExit(2)


@ros.command("loadtest")
@click.option("--rates", default="30,60,100", show_default=True, help="Mask rates to test, masks per second.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=20.0, show_default=True, help="Seconds per rate.")
@click.option("--warmup", "warmup_s", type=click.FloatRange(min=0.0), default=11.0, show_default=True,
              help="Seconds of frames and audio before the first request (a window is 10 s).")
@click.option("--fps", type=click.FloatRange(min=1.0, max=120.0), default=30.0, show_default=True)
@click.option("--size", default="640x480", show_default=True, help="Frame size WIDTHxHEIGHT.")
@click.option("--masks", "per_request", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Masks per request.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="The node's ONNX Runtime threads.")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="The node's model directory.")
@click.option("--domain", type=click.IntRange(0, 232), default=None, help="DDS domain id [a random one].")
@click.option("--log", "request_log", type=click.Path(path_type=Path), default=None,
              help="FILE.jsonl: one row per request (arrival after the node's start and after its window "
                   "settled, latency, wire, waits, context reused).")
@AUDIO_POLICY_OPTION
@_one_line_errors
def loadtest_cmd(rates: str, seconds: float, warmup_s: float, fps: float, size: str, per_request: int,
                 threads: int | None, model: Path | None, domain: int | None, request_log: Path | None,
                 audio_policy: str):
    """Start the node, a publisher (camera, microphone, segmenter) and a recorder on loopback;
    print latency p50/p99 and drops per mask rate. Ctrl-C stops early and reports."""
    import random

    from auditor_lite.ros import loadtest

    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.ClickException(f"--rates {rates!r} / --size {size!r}: expected e.g. 30,60,100 and 640x480") from None
    if not rate_list or min(rate_list) <= 0 or min(width, height) < 8:
        raise click.ClickException("--rates must be positive and --size at least 8x8")
    if model is not None and not model.is_dir():
        raise click.ClickException(f"{model}: --model is not a folder")
    domain = random.SystemRandom().randrange(20, 230) if domain is None else domain
    rows = loadtest.run(domain, rates=rate_list, seconds=seconds, warmup_s=warmup_s, fps=fps, width=width,
                        height=height, masks_per_request=per_request, threads=threads, model=model,
                        audio_policy=audio_policy, request_log=request_log,
                        log=lambda line: click.echo(line, err=True))
    click.echo(f"frames {fps:g} Hz {width}x{height}, {per_request} masks a request, loopback, domain {domain}, "
               f"audio policy {audio_policy}")
    for line in loadtest.format_rows(rows):
        click.echo(line)
