-- The outcome of every active customer and snapshot day whose label horizon has passed:
-- did the customer cancel within the horizon after the snapshot? The label is defined
-- here once: training_set takes it from here, and model_performance judges matured
-- predictions against it. A view, so a day's outcomes cost a query of that day.
{{ config(materialized='view') }}
{% set horizon = var('label_horizon_days') %}
select
    f.customer_id,
    f.snapshot_date,
    coalesce(
        x.cancelled_on > f.snapshot_date and x.cancelled_on <= f.snapshot_date + interval {{ horizon }} day, false
    ) as churned_within_horizon
from {{ ref('customer_features') }} as f
inner join {{ ref('int_snapshot_calendar') }} as c on f.snapshot_date = c.snapshot_date
left join {{ ref('stg_cancellations') }} as x on f.customer_id = x.customer_id
where c.days_before_last_load >= {{ horizon }}
