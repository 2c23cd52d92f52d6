-- Support tickets seen from each customer-day: opened within the window and known by then.
-- A ticket counts as unresolved on a day unless it was resolved by the end of that day.
-- Built by snapshot day, from the tickets of the 89 days before the days built.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}
select
    g.customer_id,
    g.snapshot_date,
    count(*) filter (where t.opened_on > g.snapshot_date - interval 30 day) as tickets_30d,
    count(*) filter (
        where t.opened_on > g.snapshot_date - interval 30 day
        and (t.resolved_on is null or t.resolved_on > g.snapshot_date)
    ) as unresolved_tickets_30d,
    avg(t.resolution_hours) filter (where t.resolved_on <= g.snapshot_date) as avg_resolution_hours_90d,
    max(t.opened_on) as last_ticket_on
{{ events_in_window(ref('stg_support_tickets'), 't', 'opened_on') }}
group by g.customer_id, g.snapshot_date
