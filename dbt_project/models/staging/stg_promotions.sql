select
    offer_id,
    customer_id,
    campaign,
    offer_type,
    offered_on,
    responded_on,
    ds as loaded_on
from {{ source('lake', 'raw_promotions') }}
