select
    ticket_id,
    customer_id,
    opened_at,
    cast(opened_at as date) as opened_on,
    category,
    resolved_at,
    cast(resolved_at as date) as resolved_on,
    date_diff('second', opened_at, resolved_at) / 3600.0 as resolution_hours,
    ds as loaded_on
from {{ source('lake', 'raw_support_tickets') }}
