-- Built by landing day: a run over some days adds (or replaces) the rows that landed on them.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='loaded_on') }}

select
    offer_id,
    customer_id,
    campaign,
    offer_type,
    offered_on,
    responded_on,
    ds as loaded_on
from {{ source('lake', 'raw_promotions') }}
where {{ landed_days('ds') }}
