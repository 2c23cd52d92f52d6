-- The plan and price in force on each customer-day, and the changes of the last 90 days.
-- Built by snapshot day; the plan in force may come from a change of any age, and
-- plan changes are few, so every change up to the last day built is read.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}

with changes as (
    select
        customer_id,
        greatest(changed_on, loaded_on) as effective_on,
        from_plan,
        to_plan,
        new_monthly_charge,
        case to_plan when 'basic' then 0 when 'standard' then 1 else 2 end
        < case from_plan when 'basic' then 0 when 'standard' then 1 else 2 end as is_downgrade
    from {{ ref('stg_plan_changes') }}
),

days as (
    select
        customer_id,
        snapshot_date
    from {{ ref('int_customer_days') }}
    where {{ snapshot_days('snapshot_date') }}
),

in_force as (
    select
        g.customer_id,
        g.snapshot_date,
        coalesce(c.to_plan, s.signup_plan) as plan,
        coalesce(c.new_monthly_charge, s.signup_monthly_charge) as monthly_charge
    from days as g
    inner join {{ ref('stg_customers') }} as s on g.customer_id = s.customer_id
    asof left join changes as c
        on g.customer_id = c.customer_id and g.snapshot_date >= c.effective_on
),

recent as (
    select
        g.customer_id,
        g.snapshot_date,
        count(*) as plan_changes_90d,
        count(*) filter (where c.is_downgrade) as downgrades_90d,
        max(c.effective_on) as last_plan_change_on
    from days as g
    inner join changes as c
        on
            g.customer_id = c.customer_id
            and g.snapshot_date >= c.effective_on
            and g.snapshot_date - interval 90 day < c.effective_on
    group by g.customer_id, g.snapshot_date
)

select
    f.customer_id,
    f.snapshot_date,
    f.plan,
    f.monthly_charge,
    coalesce(r.plan_changes_90d, 0) as plan_changes_90d,
    coalesce(r.downgrades_90d, 0) as downgrades_90d,
    r.last_plan_change_on
from in_force as f
left join recent as r
    on f.customer_id = r.customer_id and f.snapshot_date = r.snapshot_date
