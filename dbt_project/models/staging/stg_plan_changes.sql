select
    customer_id,
    changed_on,
    from_plan,
    to_plan,
    new_monthly_charge,
    ds as loaded_on
from {{ source('lake', 'raw_plan_changes') }}
