"""Object events to push flows: the object an event names is pushed at once, through the push job itself.

An event matches a push flow when its bucket is the flow's, its key is under
the flow's prefix, and the flow's include/exclude filters select the path
relative to that prefix (as a scan would). Removals are ignored (a push
never deletes at the destination). Each flow has one worker and a bounded
queue: the HTTP answer comes as soon as the event is queued, and the worker
hands what has gathered to :func:`s3ferry.jobs.push.push_objects` in one run
(the flow's ``transfers`` limit, its journal, job lock, ETag marks and retry
queue: the same delivery a scan makes).

Duplicates and reordering: ``push_objects`` delivers the version S3 holds
when it looks (not the event's), and only if that version is not delivered
yet; so a repeated event, or an older one arriving after a newer, is a no-op.
Before even that HEAD, events whose (key, ETag) this process has already
seen through are dropped (a small LRU set): a burst of duplicates costs one
delivery and no more requests. A run of the flow already going (its
scheduled scan) holds the job's lock: the batch waits and tries again, and
then usually finds its objects delivered by that scan.

Lost events: :meth:`EventDispatcher.catch_up` runs every event flow once as
``s3ferry run`` would (serve calls it on start; the flows' schedules go on
as before), which delivers whatever no event announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Sequence

from s3ferry.core.errors import S3FerryError
from s3ferry.jobs import FLOW_NAME, JobReport
from s3ferry.jobs.flowfile import Flow
from s3ferry.jobs.push import PushSettings, push_objects
from s3ferry.jobs.runner import Outcome, run_once
from s3ferry.observe import metrics
from s3ferry.operations.tree import selected
from s3ferry.service.events import ObjectEvent, QueueFull

log = logging.getLogger("s3ferry")

#: events waiting per flow before the intake answers 503 (the sender retries; the scan is the safety net)
QUEUE_SIZE = 1000
#: (flow, key, ETag) triples remembered as done
REMEMBER = 10_000
#: how long a batch waits when a run of its flow holds the job's lock
LOCKED_DELAY = 0.5


class EventDispatcher:
    """Queues object events per matching push flow and delivers them (see the module docstring)."""

    def __init__(self, flows: Sequence[Flow], names: Sequence[str] = (), queue_size: int = QUEUE_SIZE) -> None:
        """``names``: the flows events may trigger (empty: every push flow of ``flows``)."""
        self.flows = [f for f in flows if isinstance(f.settings, PushSettings) and (not names or f.name in names)]
        self._queues: dict[str, asyncio.Queue[tuple[ObjectEvent, str]]] = {
            f.name: asyncio.Queue(queue_size) for f in self.flows}
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        #: the last runs made for events (newest last), for the API and tests
        self.reports: deque[tuple[str, JobReport]] = deque(maxlen=100)

    def match(self, event: ObjectEvent) -> list[tuple[Flow, str]]:
        """The flows ``event`` is for, each with the object's path relative to the flow's prefix."""
        out = []
        for flow in self.flows:
            prefix = flow.source.path
            if prefix and not prefix.endswith("/"):
                prefix += "/"
            if event.kind != "created" or event.bucket != flow.source.bucket or not event.key.startswith(prefix):
                continue
            rel = event.key[len(prefix):]
            assert isinstance(flow.settings, PushSettings)
            if rel and selected(rel, flow.settings.filters):
                out.append((flow, rel))
        return out

    def submit(self, events: Sequence[ObjectEvent]) -> int:
        """Queue each event for the flows it matches; how many (event, flow) pairs were queued (all or none)."""
        pairs = [(flow, rel, event) for event in events for flow, rel in self.match(event)
                 if not self._done(flow, event)]
        for name in {flow.name for flow, _, _ in pairs}:
            wanted = sum(1 for f, _, _ in pairs if f.name == name)
            queue = self._queues[name]
            if queue.maxsize - queue.qsize() < wanted:
                raise QueueFull(name)
        for flow, rel, event in pairs:
            self._queues[flow.name].put_nowait((event, rel))
        return len(pairs)

    def _done(self, flow: Flow, event: ObjectEvent) -> bool:
        return event.etag is not None and (flow.name, event.key, event.etag) in self._seen

    def _remember(self, flow: Flow, event: ObjectEvent) -> None:
        if event.etag is None:
            return
        self._seen[(flow.name, event.key, event.etag)] = None
        self._seen.move_to_end((flow.name, event.key, event.etag))
        while len(self._seen) > REMEMBER:
            self._seen.popitem(last=False)

    def start(self) -> None:
        """One worker per flow (in the running loop)."""
        self._tasks = [asyncio.create_task(self._work(flow), name=f"events-{flow.name}") for flow in self.flows]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def drain(self, grace: float) -> bool:
        """Stopping: events not started are dropped (the sender's retry or the next catch-up run delivers
        them), the deliveries in flight get ``grace`` seconds; True when they ended in time."""
        for queue in self._queues.values():
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()
        try:
            await asyncio.wait_for(self.idle(), grace)
        except TimeoutError:
            return False
        return True

    async def idle(self) -> None:
        """Until every queued event has been handled."""
        await asyncio.gather(*(queue.join() for queue in self._queues.values()))

    async def catch_up(self) -> int:
        """Every event flow once, as ``s3ferry run`` runs it (what events were lost is delivered); the worst
        exit code."""
        def keep(outcome: Outcome) -> None:
            if outcome.report is not None:
                self.reports.append((outcome.flow.name, outcome.report))
        return await run_once(self.flows, keep)

    async def _work(self, flow: Flow) -> None:
        metrics.FLOW.set(flow.name)  # this task's context: the flow's label and name on what its runs record
        FLOW_NAME.set(flow.name)
        queue = self._queues[flow.name]
        while True:
            batch = [await queue.get()]
            while not queue.empty():  # what gathered while the last batch went: one run for all of it
                batch.append(queue.get_nowait())
            try:
                await self._deliver(flow, [(e, r) for e, r in batch if not self._done(flow, e)])
            finally:
                for _ in batch:
                    queue.task_done()

    async def _deliver(self, flow: Flow, batch: list[tuple[ObjectEvent, str]]) -> None:
        if not batch:
            return
        assert isinstance(flow.settings, PushSettings)
        rels = [rel for _, rel in batch]
        while True:
            try:
                report = await push_objects(flow.source, flow.destination, flow.options, flow.settings, rels)
            except S3FerryError as exc:  # the run failed as a whole (no bucket, no access): the scan retries
                log.error("error: flow %s: events for %d object(s) not delivered: %s", flow.name, len(rels), exc)
                return
            except Exception as exc:  # a bug must not end the worker: later events would queue for nobody
                log.error("error: flow %s: internal error delivering events: %s: %s (the flow's scan delivers "
                          "them)", flow.name, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                return
            if report.locked is None:
                break
            await asyncio.sleep(LOCKED_DELAY)  # a scan of this flow runs: it may deliver these, we check after
        self.reports.append((flow.name, report))
        done = set(report.copied) | set(report.skipped)
        for event, rel in batch:
            if rel in done:
                self._remember(flow, event)
        log.info("flow %s: events: %s", flow.name, report.summary())


__all__ = ["EventDispatcher"]
