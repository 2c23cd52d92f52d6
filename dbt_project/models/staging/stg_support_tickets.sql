-- Built by landing day: a run over some days adds (or replaces) the rows that landed on them.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='loaded_on') }}

select
    ticket_id,
    customer_id,
    opened_at,
    cast(opened_at as date) as opened_on,
    category,
    resolved_at,
    cast(resolved_at as date) as resolved_on,
    date_diff('second', opened_at, resolved_at) / 3600.0 as resolution_hours,
    ds as loaded_on
from {{ source('lake', 'raw_support_tickets') }}
where {{ landed_days('ds') }}
