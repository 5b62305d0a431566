"""Measurement helpers shared by the benchmarks in scripts/: machine description, peak RSS, and the
peak of live tensor memory from torch.profiler allocation events."""

import ctypes
import gc
import os
import platform
import re
import threading


# ---- machine ------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---- peak memory --------------------------------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 2.0**20

try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:
    _LIBC = None


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def allocator_peak(prof) -> int:
    """Peak of the running sum of allocation/free events recorded by torch.profiler(profile_memory=True)."""
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def release_free_memory():
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class PeakRSS:
    """Context manager: self.peak = max RSS during the block minus RSS at entry (bytes)."""

    method = None

    def __enter__(self):
        release_free_memory()
        self.baseline = rss_bytes()
        self.sampled = self.baseline
        self._stop = None
        if reset_hwm() and hwm_bytes() <= self.baseline + 16 * 2**20:
            PeakRSS.method = "VmHWM after clear_refs"
        else:
            PeakRSS.method = "RSS sampled every 2 ms"
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, rss_bytes())
            self._stop.wait(0.002)

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            top = max(self.sampled, rss_bytes())
        else:
            top = hwm_bytes()
        self.peak = max(0, top - self.baseline)
        return False
