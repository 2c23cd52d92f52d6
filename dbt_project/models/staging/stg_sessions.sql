-- Built by landing day: a run over some days adds (or replaces) the rows that landed on them.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='loaded_on') }}

select
    session_id,
    customer_id,
    started_at,
    cast(started_at as date) as session_date,
    duration_minutes,
    device,
    ds as loaded_on
from {{ source('lake', 'raw_sessions') }}
where {{ landed_days('ds') }}
