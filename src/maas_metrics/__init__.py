"""maas-metrics: token usage, rate limits, tiers and cost for LLMs served as a service."""

__version__ = "0.1.0"
