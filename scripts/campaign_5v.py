"""The 5V GPU campaign, one command (docs/campaigns.md, "The 5V GPU campaign"):

    python3 scripts/campaign_5v.py --time-budget 480

Measures EC-NAS's 5V cells on this machine's GPU into campaigns/5v-gpu/ (of this checkout,
wherever it is run from), resuming its store. The driver is experiments/campaign_5v/driver.py.
"""

import sys
from pathlib import Path

# the experiment lives in this checkout, beside ecnas: run without installing (PYTHONPATH route)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.campaign_5v.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
