"""``benchmark flood`` runs end to end on tiny sizes (figures are printed, never asserted)."""

from __future__ import annotations

import re

from stereospike_ros.cli import main


def test_flood_benchmark_prints_the_clean_and_adversarial_ingest_cost(capsys):
    args = ["benchmark", "flood", "--skip-flood", "--ingest-seconds", "0.05", "--size", "20x30"]
    assert main(args) == 0
    out = capsys.readouterr().out
    found = re.search(r"clean ([0-9.]+) ns/event, adversarial ([0-9.]+) ns/event: ratio", out)
    assert found and float(found[1]) > 0 and float(found[2]) > 0, out
    assert "dropped: outlier" in out
