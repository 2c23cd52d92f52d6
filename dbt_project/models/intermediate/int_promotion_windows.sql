-- Offers made in the 90 days up to each customer-day, and those accepted by then.
-- Built by snapshot day, from the offers of the 89 days before the days built.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}
select
    g.customer_id,
    g.snapshot_date,
    count(*) as offers_90d,
    count(*) filter (where p.responded_on <= g.snapshot_date) as offers_accepted_90d,
    max(p.offered_on) as last_offer_on
{{ events_in_window(ref('stg_promotions'), 'p', 'offered_on') }}
group by g.customer_id, g.snapshot_date
