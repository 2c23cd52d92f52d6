"""The business's closed vocabularies, shared by the simulator and the data contracts."""

PLANS = ("basic", "standard", "premium")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
DEVICES = ("mobile", "web", "tv")
TICKET_CATEGORIES = ("technical", "billing", "account", "cancellation")
