-- Point in time: a feature row may only use events up to its snapshot day.
-- latest_event_date is the newest session, ticket, offer, plan change or signup any
-- feature of the row used; one after the snapshot means a feature saw the future.
-- Checks the snapshot days the run built (every day without the day vars).
{{ config(severity='error') }}

select
    customer_id,
    snapshot_date,
    latest_event_date
from {{ ref('customer_features') }}
where latest_event_date > snapshot_date and {{ snapshot_days('snapshot_date') }}
