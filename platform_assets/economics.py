"""What a retention offer costs and does: declared once, for the business-impact estimate and the campaigns.

Both the daily ``business_impact`` estimate (top-k contacts by risk) and the
``retention_campaign`` decision (expected net value of contact) price an offer the same
way; each config inherits these fields, so a run config sets them under the same names.
"""

import dagster as dg
from pydantic import Field


class OfferEconomics(dg.Config):
    offer_cost: float = Field(default=15.0, ge=0, description="Cost of one retention offer (EUR).")
    offer_effect: float = Field(
        default=0.3, ge=0, le=1, description="Expected share of a contacted churner's risk the offer removes."
    )
