"""The Ray Data executor: clips stream from the driver's task list through read tasks into a pool of
auditor actors. Ray is imported here only, and only when ``--executor ray`` runs.

- **Blocks**: the task list is cut into blocks of :func:`~auditor_lite.scale.run.rows_per_block`
  clips (at least four per actor), so every actor gets work (one block would feed one actor).
- **Reads** (:func:`~auditor_lite.scale.work.read_batch`: frames, audio, masks) run as Ray tasks
  of ``READ_CPUS`` CPU each, never on the driver.
- **Actors** (:class:`~auditor_lite.scale.work.BatchAuditor`, ``map_batches`` with
  ``compute=ActorPoolStrategy(size=workers)``): each holds one auditor with ``threads`` ONNX Runtime
  threads and asks for a fraction of a CPU (``ACTOR_SHARE`` of the cluster's CPUs over the actors),
  so that read tasks always find room: actors asking for whole CPUs on a 2-CPU machine starve
  the reads and the job hangs.
- **A local cluster** (no ``--address``) is started on 127.0.0.1 only (no other address is
  advertised or listened on), without the dashboard, usage statistics or progress bars, with a
  token of its own passed in the environment (nothing written to ``~/.ray``), and it is shut down
  at the end. With ``--address`` the driver joins an existing cluster and only disconnects.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from pathlib import Path

READ_CPUS = 0.25        # CPUs a read task asks for
ACTOR_START_TIMEOUT_S = 600   # an actor pool not up after this fails with Ray's 'Timed out while starting actors'
ACTOR_SHARE = 0.75      # share of the cluster's CPUs the actors ask for together
LOCAL_OBJECT_STORE = 1 << 30   # bytes: a local cluster's object store (clips in flight, not the dataset)


class MissingExtraError(ValueError):
    """Ray Data (the ``scale`` extra) is not installed."""


def import_ray(local: bool = True):
    """``ray`` with Ray Data, set up quietly (and, for a local cluster, on loopback only)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        # Ray advertises the machine's outward address unless told that this is no cluster; the
        # constant is read when ray is imported, so it is set both ways.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        # the C++ core logs warnings of Ray Data's own making (e.g. actor constructor arguments in the
        # object store, ray-project/ray#53727) to the terminal; $RAY_BACKEND_LOG_LEVEL overrides this
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        if "RAY_AUTH_MODE" not in os.environ:      # a token of this run, never written to ~/.ray
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError("--executor ray needs Ray Data, which the base install leaves out: "
                                "pip install 'auditor-lite[scale]'") from None
    if local:
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.enable_auto_log_stats = False
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None) -> bool:
    """Connect to ``address`` or start a local loopback-only cluster; False when Ray was already up."""
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address is not None:
        ray.init(address=address, **quiet)
        return True
    package_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=num_cpus or len(os.sched_getaffinity(0)), include_dashboard=False,
             _node_ip_address="127.0.0.1", object_store_memory=LOCAL_OBJECT_STORE, _temp_dir=temp_dir,
             runtime_env={"env_vars": {"PYTHONPATH": python_path}}, **quiet)
    return True


def pool_shape(cpus: float, workers: int | None, threads: int | None) -> tuple[int, int]:
    """``(workers, threads)`` so that workers x threads = the cluster's CPUs unless both are given."""
    cores = max(1, int(cpus))
    if workers is None and threads is None:
        threads = 1
    if workers is None:
        workers = max(1, cores // threads)
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def run_ray(pending, out, *, model_dir, precision, threads, workers, address, method, collect) -> dict:
    from auditor_lite.scale.run import rows_per_block
    from auditor_lite.scale.work import BatchAuditor, read_batch

    started = time.time()
    started_here = start_ray(address)
    ray = import_ray(local=address is None)
    try:
        ray_init_s = time.time() - started
        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers, threads = pool_shape(cpus, workers, threads)
        workers = min(workers, len(pending))     # an actor without a block would only cost start-up
        actor_cpus = round(min(threads, ACTOR_SHARE * cpus / workers), 3)
        size = rows_per_block(len(pending), workers)
        blocks = math.ceil(len(pending) / size)
        dataset = ray.data.from_items(pending, override_num_blocks=blocks)
        dataset = dataset.map_batches(read_batch, batch_size=size, batch_format="pyarrow", num_cpus=READ_CPUS)
        args = (str(out), None if model_dir is None else str(model_dir), precision, threads, method)

        class Auditor(BatchAuditor):    # arguments bound in the class: no constructor objects to restore
            def __init__(self):
                super().__init__(*args)

        # Dispatch only once every actor has its model loaded: otherwise the first actor up takes
        # every block of a short run while the others are still starting, and they sit idle.
        ray.data.DataContext.get_current().wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        dataset = dataset.map_batches(
            Auditor, batch_size=size, batch_format="pyarrow", num_cpus=actor_cpus,
            compute=ray.data.ActorPoolStrategy(size=workers))
        for row in dataset.iter_rows():
            collect(dict(row))
    finally:
        if started_here:
            ray.shutdown()
    return {"workers": workers, "threads": threads, "actor_cpus": actor_cpus, "read_cpus": READ_CPUS,
            "cluster_cpus": cpus, "rows_per_block": size, "blocks": blocks, "ray_init_s": ray_init_s,
            "address": address or "local (127.0.0.1)"}
