"""The closed vocabularies the data contracts accept.

The built-in world generates the same values (``simulator.world``, checked by tests/test_simulator.py).
"""

PLANS = ("basic", "standard", "premium")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
DEVICES = ("mobile", "web", "tv")
TICKET_CATEGORIES = ("technical", "billing", "account", "cancellation")
