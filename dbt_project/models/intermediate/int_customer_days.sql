-- One row per customer and day they were a customer, with rolling usage windows.
-- A session counts from the day it was both held and loaded, so a late delivery
-- never changes the features of a day before it arrived.
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
),

daily_usage as (
    select
        customer_id,
        greatest(session_date, loaded_on) as activity_date,
        count(*) as sessions,
        sum(duration_minutes) as minutes
    from {{ ref('stg_sessions') }}
    group by all
),

daily as (
    select
        g.customer_id,
        g.signup_date,
        g.snapshot_date,
        g.first_day,
        coalesce(u.sessions, 0) as sessions,
        coalesce(u.minutes, 0) as minutes
    from grid as g
    left join daily_usage as u
        on g.customer_id = u.customer_id and g.snapshot_date = u.activity_date
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
    max(case when sessions > 0 then snapshot_date end) over to_date as last_session_date
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
    ),
    to_date as (
        partition by customer_id order by snapshot_date rows between unbounded preceding and current row
    )
