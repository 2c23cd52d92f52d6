select
    session_id,
    customer_id,
    started_at,
    cast(started_at as date) as session_date,
    duration_minutes,
    device,
    ds as loaded_on
from {{ source('lake', 'raw_sessions') }}
