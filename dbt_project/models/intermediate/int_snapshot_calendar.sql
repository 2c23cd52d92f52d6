-- Every day from the first to the last day loaded into the lake: the days features exist for,
-- and which of them training samples (every N days from the end of the warm-up, so the
-- sampled days stay the same as days land).
with loaded as (
    select
        min(loaded_on) as first_day,
        max(loaded_on) as last_day
    from (
        select loaded_on from {{ ref('stg_customers') }}
        union all
        select loaded_on from {{ ref('stg_sessions') }}
    )
),

days as (
    select
        first_day,
        last_day,
        cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as snapshot_date
    from loaded
)

select
    snapshot_date,
    first_day,
    last_day,
    date_diff('day', first_day, snapshot_date) as days_since_first_load,
    date_diff('day', snapshot_date, last_day) as days_before_last_load,
    date_diff('day', first_day, snapshot_date) >= {{ var('feature_warmup_days') }}
    and (date_diff('day', first_day, snapshot_date) - {{ var('feature_warmup_days') }})
    % {{ var('training_snapshot_every_days') }} = 0 as is_training_snapshot
from days
