-- Built by landing day: a run over some days adds (or replaces) the rows that landed on them.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='loaded_on') }}

select
    customer_id,
    changed_on,
    from_plan,
    to_plan,
    new_monthly_charge,
    ds as loaded_on
from {{ source('lake', 'raw_plan_changes') }}
where {{ landed_days('ds') }}
