-- The outcome of every active customer and snapshot day whose label horizon has passed:
-- did the customer cancel within the horizon after the snapshot? The label is defined
-- here once: training_set takes it from here, and model_performance judges matured
-- predictions against it. A view, so a day's outcomes cost a query of that day.
--
-- treated_within_horizon marks the outcomes a retention contact may have changed: the
-- customer was contacted (campaign log, contact arm) on a day whose contact acts, from
-- the next day for contact_effect_days, on a day of the label horizon. Those rows stay
-- here, flagged (campaign_impact compares contacted with holdout outcomes); training_set
-- and performance monitoring leave them out unless treated_labels is `keep`.
{{ config(materialized='view') }}
{% set horizon = var('label_horizon_days') %}
with contacts as (
    select
        customer_id,
        campaign_day + 1 as acts_from,
        campaign_day + {{ var('contact_effect_days') }} as acts_until
    from {{ ref('stg_campaign_log') }}
    where contacted
)

select
    f.customer_id,
    f.snapshot_date,
    coalesce(
        x.cancelled_on > f.snapshot_date and x.cancelled_on <= f.snapshot_date + interval {{ horizon }} day, false
    ) as churned_within_horizon,
    exists(
        select 1
        from contacts as k
        where
            k.customer_id = f.customer_id
            and k.acts_from <= f.snapshot_date + {{ horizon }}
            and k.acts_until > f.snapshot_date
    ) as treated_within_horizon
from {{ ref('customer_features') }} as f
inner join {{ ref('int_snapshot_calendar') }} as c on f.snapshot_date = c.snapshot_date
left join {{ ref('stg_cancellations') }} as x on f.customer_id = x.customer_id
where c.days_before_last_load >= {{ horizon }}
