{#
    The snapshot days a run builds. Dagster passes a daily partition range as the
    environment variables PLATFORM_BUILD_FIRST_DAY and PLATFORM_BUILD_LAST_DAY (inclusive;
    platform_assets/delta_source.py, build_days), and the same range to customer_features'
    microbatches (--event-time-start, --event-time-end); without them a run builds every day.

    The filter follows the vars, not is_incremental(): a first partitioned run into an
    empty table builds only its days, and a run without vars (or with --full-refresh)
    rebuilds the whole history. A microbatch replaces its whole snapshot day (delete, then
    insert), so a re-run day is replaced exactly, including customers that vanished from it.
#}
{% macro builds_day_range() %}
    {{ return(build_day('first_day') != '' and build_day('last_day') != '') }}
{% endmacro %}

{#
    A day of the build (`first_day`, `last_day`, `first_landed_day`) as ISO text, '' when not given.
    Read only when a model runs (`execute`), never while dbt parses: then a parse does not depend
    on the days, and dbt reuses the last one (vars would make it parse the whole project again
    whenever they change, about 4 s a run here).
#}
{% macro build_day(name) %}
    {{ return(env_var('PLATFORM_BUILD_' ~ name | upper, '') if execute else '') }}
{% endmacro %}

{# `column` within the days being built; `true` when building every day. #}
{% macro snapshot_days(column) -%}
    {%- if builds_day_range() -%}
        {{ column }} between date '{{ build_day("first_day") }}' and date '{{ build_day("last_day") }}'
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#
    The snapshot day a microbatch of customer_features builds, as a SQL date (dbt runs one
    batch per day of the range, --event-time-start to --event-time-end); outside a batch
    (parsing, docs, linting) the last loaded day.
#}
{% macro snapshot_day() -%}
    {%- set batch = model.get('batch') if model is mapping else none -%}
    {%- if batch and batch.get('event_time_start') -%}
        date '{{ (batch['event_time_start'] | string)[:10] }}'
    {%- else -%}
        (select max(snapshot_date) from {{ ref('int_snapshot_calendar') }})
    {%- endif -%}
{%- endmacro %}

{#
    Which snapshot days a run builds, by PLATFORM_FEATURE_DAYS (read when the model runs, like
    the days, so dbt's parse does not depend on it): `all` (the default) every day
    of its range; `used` only the days something reads: the training snapshot days
    (int_snapshot_calendar.is_training_snapshot) and the range's last day, which the run
    scores. A long history then costs its sampled days, not every customer-day; the other
    days of the range are left empty (their batches delete and insert nothing).
#}
{% macro feature_days() %}
    {%- set value = env_var('PLATFORM_FEATURE_DAYS', 'all') if execute else 'all' -%}
    {{- return(checked_choice('PLATFORM_FEATURE_DAYS', value, ['all', 'used'])) -}}
{% endmacro %}

{#
    Whether the batch of `day` (a SQL date from snapshot_day()) builds its rows: always with
    feature_days `all` or outside a batch, else when the day is used (one calendar lookup).
#}
{% macro builds_snapshot_day(day) %}
    {%- if feature_days() == 'all' or not execute or not day.startswith('date ') -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set last = "date '" ~ build_day('last_day') ~ "'" if build_day('last_day') else 'last_day' -%}
    {%- set used -%}
        select count(*) from {{ ref('int_snapshot_calendar') }}
        where snapshot_date = {{ day }} and (is_training_snapshot or snapshot_date = {{ last }})
    {%- endset -%}
    {{ return(run_query(used).columns[0].values()[0] > 0) }}
{% endmacro %}

{#
    The landing days a run adds to the staging models built by day: the run's days, or
    from PLATFORM_BUILD_FIRST_LANDED_DAY when Dagster found earlier landed days missing
    from staging (their rows must be there before the features of later days read them).
#}
{% macro landed_days(column) -%}
    {%- if builds_day_range() -%}
        {{ column }} between date '{{ build_day("first_landed_day") or build_day("first_day") }}'
        and date '{{ build_day("last_day") }}'
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#
    Tests of the by-day models check the days a run built (each day was checked when it
    was built); a run without the vars checks every day. dbt_project.yml marks those
    tests with `where: __snapshot_days__`, replaced here because a test's `where` config
    cannot call macros itself (dbt's documented override of get_where_subquery).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- set where = where | replace('__snapshot_days__', snapshot_days('snapshot_date')) -%}
        {%- set where = where | replace('__landed_days__', landed_days('loaded_on')) -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') as dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#
    The rows of `relation` whose `date_column` falls in the 90-day window up to `day` (the
    longest feature window) and that were known by that day's end (loaded_on): the point-in-time
    filter every windowed event count shares.
#}
{% macro events_known_in_window(relation, date_column, day) %}
    (select * from {{ relation }} where {{ date_column }} between {{ day }} - 89 and {{ day }} and loaded_on <= {{ day }})
{%- endmacro %}
