"""The 5V GPU campaign: EC-NAS's 5V cells measured on the GPU at hand (:mod:`.driver`), run by
``scripts/campaign_5v.py`` and, on a lent machine, ``scripts/campaign_5v_device.sh``."""
