"""The 5V GPU campaign, one command (docs/campaigns.md, "The 5V GPU campaign"):

    python3 scripts/campaign_5v.py --time-budget 480        # from the repository root

Measures EC-NAS's 5V cells on this machine's GPU into campaigns/5v-gpu/, resuming its store.
"""

import sys

from ecnas.campaign.fivev import main

if __name__ == "__main__":
    sys.exit(main())
