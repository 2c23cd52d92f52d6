-- One row per active customer and snapshot day, using only data known on that day.
-- Training and scoring both read this model, so they share one feature path.
-- Built one snapshot day per dbt microbatch: a day aggregates, per customer, the events of
-- the 90 days up to it (the longest window) that were known by its end, so a day costs one
-- window of events whatever the length of the history, and a run over a range builds its
-- days one by one in the memory of one. With the var feature_days `used`, only the days that
-- are read are built (macros/snapshot_days.sql); the others of the range are left empty.
{{ config(
    materialized='incremental',
    incremental_strategy='microbatch',
    event_time='snapshot_date',
    batch_size='day',
    begin=env_var('PLATFORM_START_DATE', '2026-01-01'),
) }}
{%- set day = snapshot_day() %}

with calendar as (
    select first_day
    from {{ ref('int_snapshot_calendar') }}
    where snapshot_date = {{ day }}
),

customers as (
    select
        c.customer_id,
        c.signup_date,
        c.signup_plan,
        c.signup_monthly_charge,
        c.region,
        c.age_band,
        c.acquisition_channel
    from {{ ref('stg_customers') }} as c
    left join {{ ref('stg_cancellations') }} as x on c.customer_id = x.customer_id
    where c.signup_date <= {{ day }} and (x.cancelled_on is null or x.cancelled_on > {{ day }})
),

-- Usage counts from the signup day: only customers who signed up inside the window can have
-- usage before it, so only they are joined to check it.
usage as (
    select
        a.customer_id,
        cast(sum(a.sessions) filter (where a.activity_date > {{ day }} - 7) as integer) as sessions_7d,
        cast(sum(a.sessions) filter (where a.activity_date > {{ day }} - 30) as integer) as sessions_30d,
        cast(sum(a.sessions) as integer) as sessions_90d,
        -- Rounded to the cent of a minute: float sums otherwise differ in the last bits between builds.
        round(sum(a.minutes) filter (where a.activity_date > {{ day }} - 7), 2) as minutes_7d,
        round(sum(a.minutes) filter (where a.activity_date > {{ day }} - 30), 2) as minutes_30d,
        round(sum(a.minutes), 2) as minutes_90d,
        max(a.activity_date) as last_session_date
    -- render(): every day of the window, not only the batch's day (dbt's microbatch filter by event_time)
    from {{ ref('int_customer_activity').render() }} as a
    left join customers as r on a.customer_id = r.customer_id and r.signup_date > {{ day }} - 89
    where
        a.activity_date between {{ day }} - 89 and {{ day }}
        and (r.signup_date is null or a.activity_date >= r.signup_date)
    group by a.customer_id
),

-- A ticket counts as unresolved on a day unless it was resolved by the end of that day.
tickets as (
    select
        customer_id,
        count(*) filter (where opened_on > {{ day }} - 30) as tickets_30d,
        count(*) filter (
            where opened_on > {{ day }} - 30 and (resolved_on is null or resolved_on > {{ day }})
        ) as unresolved_tickets_30d,
        -- Summed in ticket order: the same bits in every build, whatever the threads' split.
        avg(resolution_hours order by ticket_id) filter (where resolved_on <= {{ day }}) as avg_resolution_hours_90d,
        max(opened_on) as last_ticket_on
    from {{ events_known_in_window(ref('stg_support_tickets'), 'opened_on', day) }}
    group by customer_id
),

offers as (
    select
        customer_id,
        count(*) as offers_90d,
        count(*) filter (where responded_on <= {{ day }}) as offers_accepted_90d,
        max(offered_on) as last_offer_on
    from {{ events_known_in_window(ref('stg_promotions'), 'offered_on', day) }}
    group by customer_id
),

-- The plan in force may come from a change of any age; plan changes are few.
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
        customer_id,
        arg_max(to_plan, effective_on) as plan,
        arg_max(new_monthly_charge, effective_on) as monthly_charge,
        count(*) filter (where effective_on > {{ day }} - 90) as plan_changes_90d,
        count(*) filter (where effective_on > {{ day }} - 90 and is_downgrade) as downgrades_90d,
        max(effective_on) filter (where effective_on > {{ day }} - 90) as last_plan_change_on
    from plan_changes
    where effective_on <= {{ day }}
    group by customer_id
)

select
    c.customer_id,
    {{ day }} as snapshot_date,
    date_diff('day', c.signup_date, {{ day }}) as tenure_days,
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
        'day', coalesce(u.last_session_date, greatest(c.signup_date, k.first_day, {{ day }} - 90)), {{ day }}
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
cross join calendar as k
left join usage as u on c.customer_id = u.customer_id
left join tickets as t on c.customer_id = t.customer_id
left join offers as o on c.customer_id = o.customer_id
left join plans as p on c.customer_id = p.customer_id
{%- if not builds_snapshot_day(day) %}
    where false
{%- endif %}
