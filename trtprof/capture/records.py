"""The raw record one instrumented range produces, in the order the hot path fills it.

Why a flat list and not a dataclass: the hooks run inside every inference, and building a list of
positional slots is the cheapest way to hand a range over. The names, order and meaning
of the slots are the timeline's columns (`trtprof.timeline.columns`); this module only gives them
indices, so the capture layer never depends on pandas.
"""

from trtprof.timeline.columns import FIELDS

INDEX = {name: i for i, name in enumerate(FIELDS)}
N = len(FIELDS)


def blank():
    """A record with every slot empty; the hooks fill the slots they know."""
    return [None] * N
