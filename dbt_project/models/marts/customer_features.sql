-- One row per active customer and snapshot day, using only data known on that day.
-- Training and scoring both read this model, so they share one feature path.
-- A run builds its days (macros/snapshot_days.sql) in one set-based query: the calendar of
-- active customers on those days is laid beside the usage of each customer and day, and each
-- 7/30/90-day usage window is a window function over that union (a RANGE frame over the day
-- number), so a range of days costs one pass over its customer-days, not one query a day. A
-- single day is the same query over one day and the 89 days of usage before it. The few event
-- rows (tickets, offers, plan changes) are joined to each day they count on, with the same
-- point-in-time filter as ever (in the window and known by the day's end: known_in_window).
-- The pre-hook empties the run's whole range first, so a re-run day is replaced exactly
-- (customers that vanished from it included) and, with PLATFORM_FEATURE_DAYS=used, the days
-- of the range not built (neither training snapshots nor the range's last day) are left empty.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{% if is_incremental() %}delete from {{ this }} where {{ snapshot_days('snapshot_date') }}{% endif %}",
) }}

with days as (
    select
        snapshot_date,
        first_day,
        snapshot_date - date '2000-01-01' as day_number
    from {{ ref('int_snapshot_calendar') }}
    where
        {{ snapshot_days('snapshot_date') }}
        -- PLATFORM_FEATURE_DAYS=used: only the training snapshot days and the last day
        and ({{ feature_days() == 'all' }} or is_training_snapshot or snapshot_date = {{ build_last_day() }})
),

bounds as (
    select
        min(snapshot_date) - 89 as first_read,
        max(snapshot_date) as last_read
    from days
),

-- The customers active on each day built: signed up by it, not cancelled by it.
customers as (
    select
        c.customer_id,
        d.snapshot_date,
        d.day_number,
        d.first_day,
        c.signup_date,
        c.signup_plan,
        c.signup_monthly_charge,
        c.region,
        c.age_band,
        c.acquisition_channel
    from {{ ref('stg_customers') }} as c
    inner join days as d on c.signup_date <= d.snapshot_date
    left join {{ ref('stg_cancellations') }} as x on c.customer_id = x.customer_id
    where x.cancelled_on is null or x.cancelled_on > d.snapshot_date
),

-- Usage from the signup day on (usage logged before it never counts), in the days the windows
-- read. Minutes in integer cents of a minute: exact sums whatever the order or the frame, so every
-- build gives the same bits (a window's minutes are its cents over 100, the value of the
-- rounded float sum). The lake's minutes carry two decimals.
activity as (
    select
        a.customer_id,
        a.activity_date,
        a.activity_date - date '2000-01-01' as day_number,
        sum(a.sessions) as sessions,
        sum(cast(round(a.minutes * 100) as bigint)) as minute_cents
    from {{ ref('int_customer_activity') }} as a
    inner join {{ ref('stg_customers') }} as c on a.customer_id = c.customer_id
    cross join bounds as b
    where a.activity_date between b.first_read and b.last_read and a.activity_date >= c.signup_date
    group by a.customer_id, a.activity_date
),

-- Each built day's customers as rows of no usage beside the usage rows; a window over a
-- customer's rows in day order then sums the usage of the 7, 30 or 90 days up to each row.
usage_rows as (
    select
        customer_id,
        day_number,
        null as activity_date,
        0 as sessions,
        0 as minute_cents,
        true as is_snapshot
    from customers
    union all
    select
        customer_id,
        day_number,
        activity_date,
        sessions,
        minute_cents,
        false as is_snapshot
    from activity
),

usage_windows as (
    select
        customer_id,
        day_number,
        is_snapshot,
        sum(sessions) over last_7_days as sessions_7d,
        sum(sessions) over last_30_days as sessions_30d,
        sum(sessions) over last_90_days as sessions_90d,
        sum(minute_cents) over last_7_days as minute_cents_7d,
        sum(minute_cents) over last_30_days as minute_cents_30d,
        sum(minute_cents) over last_90_days as minute_cents_90d,
        max(activity_date) over last_90_days as last_session_date
    from usage_rows
    window
        last_7_days as (partition by customer_id order by day_number range between 6 preceding and current row),
        last_30_days as (partition by customer_id order by day_number range between 29 preceding and current row),
        last_90_days as (partition by customer_id order by day_number range between 89 preceding and current row)
),

usage as (
    select
        customer_id,
        day_number,
        cast(sessions_7d as integer) as sessions_7d,
        cast(sessions_30d as integer) as sessions_30d,
        cast(sessions_90d as integer) as sessions_90d,
        cast(minute_cents_7d as double) / 100 as minutes_7d,
        cast(minute_cents_30d as double) / 100 as minutes_30d,
        cast(minute_cents_90d as double) / 100 as minutes_90d,
        last_session_date
    from usage_windows
    where is_snapshot
),

-- A ticket counts on the days of its 90-day window once it was known (loaded), and as
-- unresolved on a day unless it was resolved by the end of that day.
tickets as (
    select
        s.customer_id,
        d.snapshot_date,
        count(*) filter (where s.opened_on > d.snapshot_date - 30) as tickets_30d,
        count(*) filter (
            where s.opened_on > d.snapshot_date - 30 and (s.resolved_on is null or s.resolved_on > d.snapshot_date)
        ) as unresolved_tickets_30d,
        -- Summed in ticket order: the same bits in every build, whatever the threads' split.
        avg(s.resolution_hours order by s.ticket_id) filter (where s.resolved_on <= d.snapshot_date)
            as avg_resolution_hours_90d,
        max(s.opened_on) as last_ticket_on
    from {{ ref('stg_support_tickets') }} as s
    inner join days as d on {{ known_in_window('s.opened_on', 's.loaded_on', 'd.snapshot_date') }}
    group by s.customer_id, d.snapshot_date
),

offers as (
    select
        p.customer_id,
        d.snapshot_date,
        count(*) as offers_90d,
        count(*) filter (where p.responded_on <= d.snapshot_date) as offers_accepted_90d,
        max(p.offered_on) as last_offer_on
    from {{ ref('stg_promotions') }} as p
    inner join days as d on {{ known_in_window('p.offered_on', 'p.loaded_on', 'd.snapshot_date') }}
    group by p.customer_id, d.snapshot_date
),

-- The plan in force may come from a change of any age; plan changes are few, so each is
-- joined to every built day from the one it took effect (the later of its day and its landing).
plan_changes as (
    select
        customer_id,
        greatest(changed_on, loaded_on) as effective_on,
        to_plan,
        new_monthly_charge,
        case to_plan when 'basic' then 0 when 'standard' then 1 else 2 end
        < case from_plan when 'basic' then 0 when 'standard' then 1 else 2 end as is_downgrade
    from {{ ref('stg_plan_changes') }}
),

plans as (
    select
        p.customer_id,
        d.snapshot_date,
        arg_max(p.to_plan, p.effective_on) as plan,
        arg_max(p.new_monthly_charge, p.effective_on) as monthly_charge,
        count(*) filter (where p.effective_on > d.snapshot_date - 90) as plan_changes_90d,
        count(*) filter (where p.effective_on > d.snapshot_date - 90 and p.is_downgrade) as downgrades_90d,
        max(p.effective_on) filter (where p.effective_on > d.snapshot_date - 90) as last_plan_change_on
    from plan_changes as p
    inner join days as d on p.effective_on <= d.snapshot_date
    group by p.customer_id, d.snapshot_date
)

select
    c.customer_id,
    c.snapshot_date,
    date_diff('day', c.signup_date, c.snapshot_date) as tenure_days,
    coalesce(p.plan, c.signup_plan) as plan,
    coalesce(p.monthly_charge, c.signup_monthly_charge) as monthly_charge,
    c.region,
    c.age_band,
    c.acquisition_channel,
    coalesce(u.sessions_7d, 0) as sessions_7d,
    coalesce(u.sessions_30d, 0) as sessions_30d,
    coalesce(u.sessions_90d, 0) as sessions_90d,
    coalesce(u.minutes_7d, 0) as minutes_7d,
    coalesce(u.minutes_30d, 0) as minutes_30d,
    coalesce(u.minutes_90d, 0) as minutes_90d,
    -- Recent against usual usage; the +0.1 keeps a quiet month from dividing by zero.
    (coalesce(u.sessions_7d, 0) / 7.0 + 0.1) / (coalesce(u.sessions_30d, 0) / 30.0 + 0.1) as session_trend,
    (coalesce(u.minutes_7d, 0) / 7.0 + 1.0) / (coalesce(u.minutes_30d, 0) / 30.0 + 1.0) as minutes_trend,
    -- Capped at 90 (no session in the 90-day window): the same range at any length of history.
    date_diff(
        'day',
        coalesce(u.last_session_date, greatest(c.signup_date, c.first_day, c.snapshot_date - 90)),
        c.snapshot_date
    ) as days_since_last_session,
    coalesce(t.tickets_30d, 0) as tickets_30d,
    coalesce(t.unresolved_tickets_30d, 0) as unresolved_tickets_30d,
    t.avg_resolution_hours_90d,
    coalesce(o.offers_90d, 0) as offers_90d,
    o.offers_accepted_90d / nullif(o.offers_90d, 0) as promo_response_rate_90d,
    coalesce(p.plan_changes_90d, 0) as plan_changes_90d,
    coalesce(p.downgrades_90d, 0) as downgrades_90d,
    greatest(u.last_session_date, t.last_ticket_on, o.last_offer_on, p.last_plan_change_on, c.signup_date)
        as latest_event_date
from customers as c
left join usage as u on c.customer_id = u.customer_id and c.day_number = u.day_number
left join tickets as t on c.customer_id = t.customer_id and c.snapshot_date = t.snapshot_date
left join offers as o on c.customer_id = o.customer_id and c.snapshot_date = o.snapshot_date
left join plans as p on c.customer_id = p.customer_id and c.snapshot_date = p.snapshot_date
