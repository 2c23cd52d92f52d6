-- One row per customer: the latest delivery of their signup record.
select
    customer_id,
    signup_date,
    plan as signup_plan,
    monthly_charge as signup_monthly_charge,
    region,
    age_band,
    acquisition_channel,
    email_sha256,
    ds as loaded_on
from {{ source('lake', 'raw_customers') }}
qualify row_number() over (partition by customer_id order by ds desc) = 1
