-- One row per active customer and snapshot day, using only data known on that day.
-- Training and scoring both read this model, so they share one feature path.
-- Built by snapshot day, like the int_* models it joins.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}
select
    d.customer_id,
    d.snapshot_date,
    date_diff('day', d.signup_date, d.snapshot_date) as tenure_days,
    p.plan,
    p.monthly_charge,
    c.region,
    c.age_band,
    c.acquisition_channel,
    d.sessions_7d,
    d.sessions_30d,
    d.sessions_90d,
    d.minutes_7d,
    d.minutes_30d,
    d.minutes_90d,
    -- Recent against usual usage; the +0.1 keeps a quiet month from dividing by zero.
    (d.sessions_7d / 7.0 + 0.1) / (d.sessions_30d / 30.0 + 0.1) as session_trend,
    (d.minutes_7d / 7.0 + 1.0) / (d.minutes_30d / 30.0 + 1.0) as minutes_trend,
    -- Capped at 90 (no session in the 90-day window): the same range at any length of history.
    date_diff(
        'day',
        coalesce(d.last_session_date, greatest(d.signup_date, d.first_day, d.snapshot_date - 90)),
        d.snapshot_date
    ) as days_since_last_session,
    coalesce(t.tickets_30d, 0) as tickets_30d,
    coalesce(t.unresolved_tickets_30d, 0) as unresolved_tickets_30d,
    t.avg_resolution_hours_90d,
    coalesce(o.offers_90d, 0) as offers_90d,
    o.offers_accepted_90d / nullif(o.offers_90d, 0) as promo_response_rate_90d,
    p.plan_changes_90d,
    p.downgrades_90d,
    greatest(d.last_session_date, t.last_ticket_on, o.last_offer_on, p.last_plan_change_on, d.signup_date)
        as latest_event_date
from {{ ref('int_customer_days') }} as d
inner join {{ ref('stg_customers') }} as c on d.customer_id = c.customer_id
inner join {{ ref('int_plan_windows') }} as p
    on d.customer_id = p.customer_id and d.snapshot_date = p.snapshot_date and {{ snapshot_days('p.snapshot_date') }}
left join {{ ref('int_ticket_windows') }} as t
    on d.customer_id = t.customer_id and d.snapshot_date = t.snapshot_date and {{ snapshot_days('t.snapshot_date') }}
left join {{ ref('int_promotion_windows') }} as o
    on d.customer_id = o.customer_id and d.snapshot_date = o.snapshot_date and {{ snapshot_days('o.snapshot_date') }}
where {{ snapshot_days('d.snapshot_date') }}
