#!/usr/bin/python3
"""Records Wilson score intervals from statsmodels (Debian's python3-statsmodels) for the C# tests:
tests/fixtures/stats/wilson.json. /usr/bin/python3 tools/reference/stats_fixtures.py"""
import json
import os

import statsmodels
from statsmodels.stats.proportion import proportion_confint

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
cases = []
for trials in (1, 2, 5, 10, 20, 37, 100, 1000):
    for successes in sorted({0, 1, trials // 3, trials // 2, trials - 1, trials}):
        if 0 <= successes <= trials:
            lo, hi = proportion_confint(successes, trials, alpha=0.05, method="wilson")
            cases.append({"successes": successes, "trials": trials, "low": lo, "high": hi})
with open(os.path.join(ROOT, "tests", "fixtures", "stats", "wilson.json"), "w") as f:
    json.dump({"source": f"statsmodels {statsmodels.__version__} proportion_confint(method='wilson', alpha=0.05)", "cases": cases}, f, indent=1)
print(len(cases), "cases")
