"""`translane loadtest`: what a provider or a gateway really delivers, measured as its callers see it.

A client of the service (or of any OpenAI-compatible endpoint), never of its internals: it
sends requests on a schedule (closed loop at a fixed concurrency, or open loop at a rate in
requests or tokens per minute with constant, Poisson or gamma arrivals), records each
request's timings, tokens and cost, and summarises each step.
"""

from __future__ import annotations

from ._cli import add_parser
from ._config import LoadConfig, Target, load_config_file
from ._records import Record, Summary
from ._runner import run

__all__ = ["LoadConfig", "Record", "Summary", "Target", "add_parser", "load_config_file", "run"]
