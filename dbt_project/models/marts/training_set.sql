-- Features on snapshot days spread through history, with the label from churn_outcomes:
-- did the customer cancel within the horizon after the snapshot? Only snapshots whose
-- horizon has fully passed are kept, on the calendar's training snapshot days (every N days
-- after a warm-up, int_snapshot_calendar.is_training_snapshot).
-- With treated_labels `exclude` (the default) a customer-day whose label a retention contact
-- may have changed (churn_outcomes.treated_within_horizon) is left out: the model learns from
-- the clean sample, the untreated customers and the campaigns' holdout arm.
{% set horizon = var('label_horizon_days') %}
with snapshots as (
    select snapshot_date
    from {{ ref('int_snapshot_calendar') }}
    where is_training_snapshot and days_before_last_load >= {{ horizon }}
)

-- f.* on purpose: a feature added to customer_features reaches training with no change here.
select
    f.*,  -- noqa: AM04
    o.churned_within_horizon
from {{ ref('customer_features') }} as f
inner join snapshots as s on f.snapshot_date = s.snapshot_date
inner join {{ ref('churn_outcomes') }} as o on f.customer_id = o.customer_id and f.snapshot_date = o.snapshot_date
{% if treated_labels() == 'exclude' %}
    where not o.treated_within_horizon
{% endif %}
