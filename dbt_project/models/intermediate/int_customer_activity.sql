-- The product usage of each customer and day: sessions and minutes, counted on the day a
-- session was both held and loaded, so a late delivery never changes a day before it arrived.
-- Built once per landing day (delete+insert of the days a run adds), and read by every
-- snapshot day's usage windows instead of the sessions themselves.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='loaded_on') }}

select
    customer_id,
    greatest(session_date, loaded_on) as activity_date,
    loaded_on,
    count(*) as sessions,
    sum(duration_minutes) as minutes
from {{ ref('stg_sessions') }}
where {{ landed_days('loaded_on') }}
group by customer_id, greatest(session_date, loaded_on), loaded_on
