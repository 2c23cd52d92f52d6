-- Offers made in the 90 days up to each customer-day, and those accepted by then.
-- Built by snapshot day, from the offers of the 89 days before the days built.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='snapshot_date') }}
select
    g.customer_id,
    g.snapshot_date,
    count(*) as offers_90d,
    count(*) filter (where p.responded_on <= g.snapshot_date) as offers_accepted_90d,
    max(p.offered_on) as last_offer_on
from {{ ref('int_customer_days') }} as g
inner join {{ ref('stg_promotions') }} as p
    on
        g.customer_id = p.customer_id
        and g.snapshot_date >= p.offered_on
        and g.snapshot_date >= p.loaded_on
        and g.snapshot_date - interval 90 day < p.offered_on
where {{ snapshot_days('g.snapshot_date') }} and {{ snapshot_days('p.offered_on', 89) }}
group by g.customer_id, g.snapshot_date
