"""The shared timing loop on a fake device whose clock only the timed call advances."""

import pytest

from mlbench.timing import TimingPlan, counts_for, time_call


class FakeDevice:
    has_events = False

    def __init__(self):
        self.now = 0.0
        self.syncs = 0
        self.log = []

    def synchronize(self):
        self.syncs += 1

    def event(self):
        device = self

        class Event:
            t = None

            def record(self):
                self.t = device.now
                device.log.append("event")

            def elapsed_s(self, end):
                return end.t - self.t

        return Event()


def test_counts_from_budgets_and_counts():
    assert counts_for(TimingPlan(warmup=3, reps=7), 1.0) == (3, 7)
    # 100 ms budget / 2 ms per call = 50 reps; 25 ms warm-up / 2 ms = 13 calls
    assert counts_for(TimingPlan(warmup_ms=25, budget_ms=100), 0.002) == (13, 50)
    # clamped to min_reps / max_reps
    assert counts_for(TimingPlan(budget_ms=100, min_reps=5, max_reps=20), 1.0)[1] == 5
    assert counts_for(TimingPlan(budget_ms=100, min_reps=5, max_reps=20), 1e-6)[1] == 20


def test_samples_are_the_calls_not_the_prepare_step():
    device = FakeDevice()
    durations = iter([0.5] * 4 + [0.5] * 2 + [1.0, 2.0, 3.0, 4.0, 5.0])  # estimate(4), warm-up(2), timed(5)

    def fn():
        device.now += next(durations)
        device.log.append("call")

    def prepare():
        device.now += 100.0  # a slow cache flush: must not be in any sample
        device.log.append("prepare")

    timing = time_call(fn, device, TimingPlan(warmup=2, reps=5), prepare=prepare)
    assert timing.samples_s == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert (timing.warmup, timing.reps) == (2, 5)
    assert timing.timer == "sync-clock"
    timed = device.log[-20:]  # prepare, event, call, event per rep
    assert timed == ["prepare", "event", "call", "event"] * 5


def test_one_synchronize_after_the_timed_loop():
    device = FakeDevice()

    def fn():
        device.now += 1.0

    time_call(fn, device, TimingPlan(warmup=0, reps=10))
    # the estimate syncs after its untimed call and each of its 3 calls (4); the timed loop adds exactly one,
    # however many repetitions it takes
    assert device.syncs == 5


class QueueingDevice:
    """A device with a stream: the host queues work (each launch costs it `launch_s`), the device runs it in
    order, starting each item when it was queued and the previous one finished. Events record device time."""

    has_events = True

    def __init__(self, call_s: float, launch_s: float, can_delay: bool):
        self.host = 0.0  # host clock
        self.free = 0.0  # when the device finishes its queue
        self.call_s, self.launch_s = call_s, launch_s
        if can_delay:
            self.queue_delay = lambda seconds: self._queue(seconds)
        self.delays = 0

    def _queue(self, device_s: float) -> float:
        self.host += self.launch_s
        start = max(self.host, self.free)
        self.free = start + device_s
        return start

    def call(self):
        self._queue(self.call_s)

    def synchronize(self):
        self.host = max(self.host, self.free)

    def event(self):
        device = self

        class Event:
            t = None

            def record(self):
                self.t = device._queue(0.0)

            def elapsed_s(self, end):
                return end.t - self.t

        return Event()


@pytest.mark.parametrize("call_us, launch_us", [(2.0, 5.0), (10.0, 25.0), (1.0, 1.0)])
def test_short_calls_are_queued_behind_a_device_delay_and_time_the_device_alone(call_us, launch_us):
    plain = QueueingDevice(call_us * 1e-6, launch_us * 1e-6, can_delay=False)
    timing = time_call(plain.call, plain, TimingPlan(warmup=2, reps=20), estimate_s=call_us * 1e-6)
    assert timing.timer == "device-events"
    # on an idle stream the host's launch gaps are in every sample (hand: the call waits for its own launch,
    # the end event for its own): launch + max(call, launch)
    assert min(timing.samples_s) == pytest.approx((launch_us + max(call_us, launch_us)) * 1e-6)

    queued = QueueingDevice(call_us * 1e-6, launch_us * 1e-6, can_delay=True)
    timing = time_call(queued.call, queued, TimingPlan(warmup=2, reps=20), estimate_s=call_us * 1e-6)
    assert timing.timer == "device-events-queued" and timing.queued
    assert all(s == pytest.approx(call_us * 1e-6) for s in timing.samples_s)


def test_long_calls_are_not_delayed():
    device = QueueingDevice(0.05, 10e-6, can_delay=True)
    timing = time_call(device.call, device, TimingPlan(warmup=0, reps=3), estimate_s=0.05)
    assert timing.timer == "device-events"
