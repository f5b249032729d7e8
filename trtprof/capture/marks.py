"""NVTX ranges in the `trtprof` domain, with attributes built once per (subgraph, event).

Why cache: building `EventAttributes` and registering its message string costs microseconds; a
push/pop with cached attributes costs ~0.1 us. Registered strings also let Nsight Systems filter on
our ranges (`--capture-range=nvtx`). Without the nvtx package, or with no tool attached, every call
is a no-op (nvtx hands out a dummy domain).

Why `push`/`pop` are the domain's own bound methods, set on the instance: they run twice per range
on the hot path, and a wrapper method would add a Python frame to each.
"""
from __future__ import annotations

from trtprof.timeline.nvtx import COLORS, DOMAIN, range_name


class Marks:
    def __init__(self, enabled: bool = True):
        self._domain = None
        self.available = False
        if enabled:
            try:
                import nvtx
            except ImportError:
                return
            self._domain = nvtx.get_domain(DOMAIN)
            self.available = True
            self.push, self.pop = self._domain.push_range, self._domain.pop_range
        self._cache: dict = {}

    def attributes(self, subgraph: str, event: str, detail: str = ""):
        """Cached attributes for a range named '<subgraph> <event>[ (<detail>)]'."""
        key = (subgraph, event, detail)
        attrs = self._cache.get(key) if self._domain else None
        if attrs is None and self._domain is not None:
            d = self._domain
            msg = range_name(subgraph, event, detail)
            # a str message is registered by nvtx itself (registered strings: --capture-range=nvtx works)
            attrs = d.get_event_attributes(message=msg, color=COLORS.get(event),
                                           category=d.get_category_id(event))
            self._cache[key] = attrs
        return attrs

    def push(self, attrs) -> None:  # without a domain; replaced on the instance when there is one
        pass

    def pop(self) -> None:
        pass
