-- A customer cancels once; a re-delivered record keeps the first cancellation day.
select
    customer_id,
    cancelled_on,
    reason as cancellation_reason,
    ds as loaded_on
from {{ source('lake', 'raw_cancellations') }}
qualify row_number() over (partition by customer_id order by cancelled_on, ds) = 1
