-- One row per customer and day they were a customer, with rolling usage windows.
-- A session counts from the day it was both held and loaded, so a late delivery
-- never changes the features of a day before it arrived.
-- Built by snapshot day: a run over some days reads only the usage of the 89 days
-- before them, which is all the longest window (and the last session it reports) needs.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}

with customers as (
    select
        c.customer_id,
        c.signup_date,
        x.cancelled_on
    from {{ ref('stg_customers') }} as c
    left join {{ ref('stg_cancellations') }} as x
        on c.customer_id = x.customer_id
),

grid as (
    select
        c.customer_id,
        c.signup_date,
        k.snapshot_date,
        k.first_day
    from customers as c
    inner join {{ ref('int_snapshot_calendar') }} as k
        on
            c.signup_date <= k.snapshot_date
            and (c.cancelled_on is null or c.cancelled_on > k.snapshot_date)
    where {{ snapshot_days('k.snapshot_date') }}
),

daily_usage as (
    select
        customer_id,
        greatest(session_date, loaded_on) as activity_date,
        count(*) as sessions,
        sum(duration_minutes) as minutes
    from {{ ref('stg_sessions') }}
    where {{ snapshot_days('greatest(session_date, loaded_on)', 89) }}
    group by all
),

-- The customer-days being built with their usage; when building some days only, also
-- the usage before them on days the customer was active, which the windows sum over.
daily as (
    select
        g.customer_id,
        g.signup_date,
        g.snapshot_date,
        g.first_day,
        true as is_built,
        coalesce(u.sessions, 0) as sessions,
        coalesce(u.minutes, 0) as minutes
    from grid as g
    left join daily_usage as u
        on g.customer_id = u.customer_id and g.snapshot_date = u.activity_date
    {% if builds_day_range() %}
        union all
        select
            u.customer_id,
            null as signup_date,
            u.activity_date as snapshot_date,
            null as first_day,
            false as is_built,
            u.sessions,
            u.minutes
        from daily_usage as u
        inner join customers as c on u.customer_id = c.customer_id
        where
            u.activity_date < date '{{ build_day("first_day") }}'
            and c.signup_date <= u.activity_date
            and (c.cancelled_on is null or c.cancelled_on > u.activity_date)
    {% endif %}
)

select
    customer_id,
    snapshot_date,
    signup_date,
    first_day,
    cast(sum(sessions) over last_7d as integer) as sessions_7d,
    cast(sum(sessions) over last_30d as integer) as sessions_30d,
    cast(sum(sessions) over last_90d as integer) as sessions_90d,
    -- Rounded to the cent of a minute: float sums otherwise differ in the last bits between builds.
    round(sum(minutes) over last_7d, 2) as minutes_7d,
    round(sum(minutes) over last_30d, 2) as minutes_30d,
    round(sum(minutes) over last_90d, 2) as minutes_90d,
    max(case when sessions > 0 then snapshot_date end) over last_90d as last_session_date
from daily
window
    last_7d as (
        partition by customer_id order by snapshot_date range between interval 6 day preceding and current row
    ),
    last_30d as (
        partition by customer_id order by snapshot_date range between interval 29 day preceding and current row
    ),
    last_90d as (
        partition by customer_id order by snapshot_date range between interval 89 day preceding and current row
    )
qualify is_built
