{#
    The events of `relation` (aliased `alias`) a customer-day `g` of int_customer_days has
    seen within its `window_days`: the customer's, on `event_day` or earlier, landed by then
    (point in time), and not older than the window; only the days being built, and the
    events they can see.
#}
{% macro events_in_window(relation, alias, event_day, window_days=90) -%}
from {{ ref('int_customer_days') }} as g
inner join {{ relation }} as {{ alias }}
    on
        g.customer_id = {{ alias }}.customer_id
        and g.snapshot_date >= {{ alias }}.{{ event_day }}
        and g.snapshot_date >= {{ alias }}.loaded_on
        and g.snapshot_date - interval {{ window_days }} day < {{ alias }}.{{ event_day }}
where {{ snapshot_days('g.snapshot_date') }} and {{ snapshot_days(alias ~ '.' ~ event_day, window_days - 1) }}
{%- endmacro %}
