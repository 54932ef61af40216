"""``--backend ray``: label the videos on a Ray cluster, each worker loading the models once.

Why Ray and not a home-made pool: Ray is what this field already runs batch GPU inference on; it places
workers on GPUs (``--gpus-per-worker``), spans machines (``--ray-address``) and reports a dead worker as an
error on the call it was running, which is all a retry needs.

Shape of a run: N actors (:class:`VideoWorker`), each loads the tracker once (``load``), then takes one video
at a time from the driver's queue (``label``) and sends back the record (compressed RLE) and, with
``--save-frames``, the JPEG bytes. The driver (this process) alone writes the output folder through the
same :class:`~.runner.VideoWriter` as the local backend, so the folder lock, the crash-safe publish and the
bytes are the same as a local run; workers need the inputs and the models, not the output folder.

Failures: an error while labelling (a corrupt video) is a failed video, as locally. A worker that dies
(SIGKILL, out of memory, lost node) has its video put back at the front of the queue for another worker and
is replaced by a fresh one; a video whose workers died ``max_retries + 1`` times fails with ``WorkerDied``.
A model that does not load stops the run, as locally. Ray is optional: without it, ``--backend ray`` stops
with one line saying how to install it.

Workers are threaded actors (two threads: one labels, one answers ``status`` polls), which feeds the
driver's frame progress bar; each sets ``torch.set_num_threads(cpus_per_worker)`` so N workers do not
oversubscribe a machine's cores.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..errors import ConfigError, Gsam2Error, ModelError
from .layout import VideoStage
from .record import VideoRecord
from .runner import Outcome, RunnerOptions, RunProgress, VideoWriter, WorkItem
from .work import LabelledVideo, TrackerLike, TrackerSpec, encode_jpeg, failure_entry, label_video

log = logging.getLogger("gsam2_video")
INSTALL_HINT = "pip install 'gsam2-video[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray, which is not installed; install it with: {INSTALL_HINT}") \
            from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run. ``workers=None``: as many as the cluster's CPUs (or GPUs, when
    ``gpus_per_worker > 0``) fit, at most one per video."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_retries: int = 2
    poll_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise ConfigError("--gpus-per-worker must be >= 0 and --cpus-per-worker > 0")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {self.max_retries}")


@dataclass(frozen=True)
class WorkerStatus:
    """What a busy worker reported at a progress poll (``attempt`` counts from 0)."""

    pid: int
    host: str
    video: str
    frames: int
    attempt: int


class VideoWorker:
    """The body of a Ray actor: loads the tracker once, then labels one video per ``label`` call."""

    def __init__(self, spec: TrackerSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self._spec = spec
        self._tracker: TrackerLike | None = None
        self._status: tuple[str | None, int] = (None, 0)

    def load(self) -> dict[str, Any]:
        """Load the models; a library error comes back as data so the driver can re-raise it as such."""
        try:
            self._tracker = self._spec.build()
        except Gsam2Error as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def status(self) -> tuple[str | None, int]:
        """(video being labelled, frames done so far); answered while ``label`` runs (threaded actor)."""
        return self._status

    def label(self, item: WorkItem, options: RunnerOptions) -> dict[str, Any]:
        """``{"labelled": LabelledVideo, "frames": [(index, jpeg bytes)]}`` or ``{"failure": entry}``."""
        if self._tracker is None:
            raise RuntimeError("VideoWorker.label called before load")
        name = item.job.name
        frames: list[tuple[int, bytes]] = []
        self._status = (name, 0)

        def keep_frame(index: int, image: Any) -> None:
            frames.append((index, encode_jpeg(index, image, options.jpeg_quality)))

        def count(done: int) -> None:
            self._status = (name, done)

        try:
            labelled = label_video(self._tracker, item.job, item.settings, save_frames=options.save_frames,
                                   allow_partial=options.allow_partial, on_frame=keep_frame, on_progress=count)
        except Exception as exc:  # noqa: BLE001 - a video fails alone
            return {"failure": failure_entry(item.job, exc)}
        finally:
            self._status = (None, 0)
        return {"labelled": labelled, "frames": frames}


@dataclass
class _Slot:
    """One worker position: its current actor, what it is doing, and consecutive deaths while loading."""

    number: int
    actor: Any = None
    pid: int = 0
    host: str = ""
    load_deaths: int = 0
    item: WorkItem | None = None
    attempt: int = 0
    frames_seen: int = 0
    retired: bool = False


@dataclass
class _Queue:
    pending: deque[tuple[WorkItem, int]] = field(default_factory=deque)  # (item, deaths so far)
    inflight: dict[Any, tuple[_Slot, str]] = field(default_factory=dict)  # ref -> (slot, "load" | "label")


class RayBackend:
    """Labels work items on Ray actors (see the module docstring). ``on_status`` is called with every busy
    worker's :class:`WorkerStatus` at each progress poll (the frame bar uses the same polls)."""

    name = "ray"

    def __init__(self, spec: TrackerSpec, options: RayOptions, runner_options: RunnerOptions,
                 on_status: Callable[[WorkerStatus], None] | None = None) -> None:
        self.spec = spec
        self.options = options
        self.runner_options = runner_options
        self.on_status = on_status
        self.retried = 0
        self.workers_started = 0

    def stats(self) -> dict[str, Any]:
        """For the run report: workers started (replacements included) and videos retried."""
        return {"workers_started": self.workers_started, "retried": self.retried, **dataclasses.asdict(self.options)}

    # -- cluster -------------------------------------------------------------------------------------------
    def _connect(self, ray: Any) -> bool:
        """Join the cluster (or start a local one); True when this call started Ray (and must stop it)."""
        if ray.is_initialized():
            return False
        start_ray(ray, self.options.address)
        return True

    def _check_resources(self, ray: Any, progress: RunProgress) -> None:
        """Say so when no worker fits the cluster as it is now (it waits for an autoscaler, else forever)."""
        resources = ray.cluster_resources()
        for key, need, flag in (("CPU", self.options.cpus_per_worker, "--cpus-per-worker"),
                                ("GPU", self.options.gpus_per_worker, "--gpus-per-worker")):
            have = float(resources.get(key, 0.0))
            if need > 0 and have < need:
                progress.message(f"the Ray cluster has {have:g} {key}s and a worker needs {need:g} ({flag}); "
                                 f"workers wait until the cluster grows (Ctrl-C to stop)")

    def _worker_count(self, ray: Any, videos: int) -> int:
        if self.options.workers is not None:
            return min(self.options.workers, videos)
        resources = ray.cluster_resources()
        if self.options.gpus_per_worker > 0:
            fit = int(resources.get("GPU", 0) // self.options.gpus_per_worker)
        else:
            fit = int(resources.get("CPU", 1) // self.options.cpus_per_worker)
        return max(1, min(fit, videos))

    # -- the run -------------------------------------------------------------------------------------------
    def label(self, items: list[WorkItem], writer: VideoWriter, progress: RunProgress) -> Iterator[Outcome]:
        if not items:
            return
        ray = import_ray()
        started_ray = self._connect(ray)
        slots: list[_Slot] = []
        try:
            yield from self._schedule(ray, items, writer, progress, slots)
        finally:
            for slot in slots:
                self._kill(ray, slot)
            if started_ray:
                ray.shutdown()

    def _schedule(self, ray: Any, items: list[WorkItem], writer: VideoWriter, progress: RunProgress,
                  slots: list[_Slot]) -> Iterator[Outcome]:
        from ray.exceptions import RayActorError, RayTaskError

        actor_class = ray.remote(VideoWorker).options(
            num_cpus=self.options.cpus_per_worker, num_gpus=self.options.gpus_per_worker, max_concurrency=2,
            max_restarts=0, max_task_retries=0)
        queue = _Queue(deque((item, 0) for item in items))
        self._check_resources(ray, progress)
        slots += [_Slot(k) for k in range(self._worker_count(ray, len(items)))]
        for slot in slots:
            self._start(actor_class, slot, queue)
        # until every video is done; a worker still waiting for resources (more workers than the cluster
        # fits) must not hold up the end of the run
        while queue.pending or any(kind == "label" for _, kind in queue.inflight.values()):
            if not queue.inflight:
                break
            ready, _ = ray.wait(list(queue.inflight), num_returns=1, timeout=self.options.poll_seconds)
            if not ready:
                self._poll(ray, slots, progress)
                continue
            ref = ready[0]
            slot, kind = queue.inflight.pop(ref)
            try:
                value = ray.get(ref)
            except RayActorError as exc:
                yield from self._died(ray, actor_class, slot, slots, kind, queue, progress, exc)
                continue
            except RayTaskError as exc:  # an exception the worker did not turn into data
                if kind == "load":
                    raise ModelError(f"a Ray worker could not load the models: {_cause(exc)}") from None
                yield self._failed(slot, failure_entry(slot.item.job, _cause(exc)), progress)  # type: ignore[union-attr]
            else:
                if kind == "load":
                    self._loaded(slot, value)
                else:
                    yield self._finished(slot, value, writer, progress)
            self._dispatch(slot, queue, progress)
        if queue.pending:
            left = len(queue.pending)
            raise ModelError(f"every Ray worker died while loading the models ({left} videos not labelled); "
                             f"see the Ray logs (e.g. out of memory)")

    def _start(self, actor_class: Any, slot: _Slot, queue: _Queue) -> None:
        slot.actor = actor_class.remote(self.spec, max(1, int(self.options.cpus_per_worker)))
        slot.item, slot.pid, slot.host = None, 0, ""
        queue.inflight[slot.actor.load.remote()] = (slot, "load")
        self.workers_started += 1

    def _loaded(self, slot: _Slot, value: dict[str, Any]) -> None:
        if "error" in value:
            kind = getattr(errors, str(value["error"]), None)
            cls = kind if isinstance(kind, type) and issubclass(kind, Gsam2Error) else ModelError
            raise cls(value["message"])
        slot.pid, slot.host, slot.load_deaths = int(value["pid"]), str(value["host"]), 0

    def _dispatch(self, slot: _Slot, queue: _Queue, progress: RunProgress) -> None:
        """Give a loaded, idle worker the next video, or let it go when the queue is empty."""
        if slot.retired or slot.actor is None or not queue.pending:
            return  # an idle worker stays until the end: a video of a worker that dies may come back
        item, deaths = queue.pending.popleft()
        slot.item, slot.attempt, slot.frames_seen = item, deaths, 0
        queue.inflight[slot.actor.label.remote(item, self.runner_options)] = (slot, "label")
        progress.started(item.job.name)

    def _finished(self, slot: _Slot, value: dict[str, Any], writer: VideoWriter, progress: RunProgress) -> Outcome:
        item = slot.item
        assert item is not None
        if "failure" in value:
            return self._failed(slot, value["failure"], progress)
        labelled: LabelledVideo = value["labelled"]
        progress.add_frames(labelled.record.length - slot.frames_seen)
        slot.item = None
        try:
            record = self._write(labelled, value["frames"], writer)
        except Exception as exc:  # noqa: BLE001 - a video fails alone (e.g. the disk is full)
            return Outcome(item, failure=failure_entry(item.job, exc))
        return Outcome(item, record=record)

    def _failed(self, slot: _Slot, entry: dict[str, Any], progress: RunProgress) -> Outcome:
        item = slot.item
        assert item is not None
        progress.add_frames(-slot.frames_seen)
        slot.item = None
        return Outcome(item, failure=entry)

    @staticmethod
    def _write(labelled: LabelledVideo, frames: list[tuple[int, bytes]], writer: VideoWriter) -> VideoRecord:
        stage: VideoStage = writer.open(labelled.record.name)
        try:
            for index, data in frames:
                stage.save_frame_bytes(index, data)
            return writer.finish(stage, labelled)
        except BaseException:
            writer.abandon(stage)
            raise

    def _died(self, ray: Any, actor_class: Any, slot: _Slot, slots: list[_Slot], kind: str, queue: _Queue,
              progress: RunProgress, exc: BaseException) -> Iterator[Outcome]:
        """A worker died: requeue its video (or fail it after too many deaths) and replace the worker."""
        who = f"Ray worker {slot.number} (pid {slot.pid or '?'}{' on ' + slot.host if slot.host else ''})"
        self._kill(ray, slot)
        item = slot.item
        if kind == "load":
            slot.load_deaths += 1
            progress.message(f"{who} died while loading the models")
        elif item is not None:
            deaths = slot.attempt + 1
            progress.add_frames(-slot.frames_seen)
            slot.item = None
            if deaths > self.options.max_retries:
                progress.message(f"{item.job.name}: {who} died while labelling it; no retries left")
                yield Outcome(item, failure={
                    "video": item.job.name, "source": item.job.source, "origin": item.job.origin,
                    "error": "WorkerDied",
                    "message": f"{item.job.source}: the Ray worker labelling it died {deaths} times "
                               f"(last: {type(exc).__name__}); see the Ray logs"})
            else:
                self.retried += 1
                queue.pending.appendleft((item, deaths))
                progress.message(f"{item.job.name}: {who} died while labelling it; retrying on another "
                                 f"worker (attempt {deaths + 1} of {self.options.max_retries + 1})")
        for idle in slots:  # a loaded worker with nothing to do takes the requeued video at once
            if idle is not slot and idle.actor is not None and idle.pid and idle.item is None:
                self._dispatch(idle, queue, progress)
        if queue.pending and slot.load_deaths <= self.options.max_retries:
            self._start(actor_class, slot, queue)
        else:
            slot.retired = True

    def _poll(self, ray: Any, slots: list[_Slot], progress: RunProgress) -> None:
        """Ask busy workers how far they got: advances the frame bar and feeds ``on_status``."""
        from ray.exceptions import GetTimeoutError, RayError

        busy = [s for s in slots if s.item is not None and s.actor is not None]
        refs = [s.actor.status.remote() for s in busy]
        for slot, ref in zip(busy, refs):
            try:
                video, frames = ray.get(ref, timeout=max(1.0, self.options.poll_seconds * 4))
            except (GetTimeoutError, RayError):
                continue  # a dead worker shows up on its label call
            if slot.item is None or video != slot.item.job.name:
                continue
            progress.add_frames(frames - slot.frames_seen)
            slot.frames_seen = frames
            if self.on_status is not None:
                self.on_status(WorkerStatus(slot.pid, slot.host, video, frames, slot.attempt))

    @staticmethod
    def _kill(ray: Any, slot: _Slot) -> None:
        if slot.actor is None:
            return
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            log.debug("Ray worker %d: kill: %s", slot.number, exc)
        slot.actor = None


def start_ray(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address``, or start a local one that listens on 127.0.0.1 only.

    Why: a local cluster's servers (GCS, raylet, workers, runtime-env agent) otherwise listen on every
    interface, so anyone on the network could submit work to this machine. Ray turns a loopback
    ``_node_ip_address`` into the machine's outward address (``resolve_ip_for_localhost``); for the duration
    of the start that conversion is switched off, so every server binds 127.0.0.1. Joining an existing
    cluster (``--ray-address`` or ``RAY_ADDRESS``) keeps that cluster's own addresses.
    """
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    local = address is None and not os.environ.get("RAY_ADDRESS")
    services = getattr(getattr(ray, "_private", None), "services", None)
    resolve = getattr(services, "resolve_ip_for_localhost", None)
    if local:
        kwargs["_node_ip_address"] = "127.0.0.1"
        if resolve is not None:
            services.resolve_ip_for_localhost = lambda host: host
        else:  # pragma: no cover - a Ray without the hook: it may still pick the outward address
            log.warning("this Ray version may bind the local cluster to all interfaces")
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "the local machine"
        raise ConfigError(f"cannot start or reach a Ray cluster at {where}: {exc}") from None
    finally:
        if local and resolve is not None:
            services.resolve_ip_for_localhost = resolve


def _cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside a RayTaskError."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
