"""The translation engine: every segment goes through one fixed stack of layers (`STACK`, outer to inner:
blank → dedup → cache → split → truncation ladder → route → retry/fallback → room → admission → settle →
observe → upstream, online or on the provider's batch route), each a module of its own behind one interface,
`Step`: `Work` in, `Outcome` out."""

from ._engine import STACK, Engine
from ._parts import Parts
from ._rotation import Rotation
from ._work import Attempt, Job, JobResult, Outcome, SegmentDelta, Sink, Stats, Step, Work

__all__ = [
    "STACK",
    "Attempt",
    "Engine",
    "Job",
    "JobResult",
    "Outcome",
    "Parts",
    "Rotation",
    "SegmentDelta",
    "Sink",
    "Stats",
    "Step",
    "Work",
]
