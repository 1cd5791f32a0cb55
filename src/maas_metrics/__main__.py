"""`python -m maas_metrics` runs the `maas-metrics` command."""

from maas_metrics.cli import main

main()
