"""Simulation: the OpenAI-compatible mock model and the synthetic traffic generator.

The LLM is the only part of maas-metrics that is ever mocked; everything the
gateway, the limiter and the dashboards see comes from real HTTP traffic that
`traffic` sends to a real server.
"""
