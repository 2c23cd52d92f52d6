{#
    The snapshot days a run builds. Dagster passes a daily partition range as the
    environment variables PLATFORM_BUILD_FIRST_DAY and PLATFORM_BUILD_LAST_DAY (inclusive;
    platform_assets/delta_source.py, build_days); without them a run builds every day.

    The filter follows the variables, not is_incremental(): a first partitioned run into an
    empty table builds only its days, and a run without them (or with --full-refresh)
    rebuilds the whole history. customer_features first deletes the whole range it builds,
    so a re-run day is replaced exactly, including customers that vanished from it.
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
    Which snapshot days a run builds, by PLATFORM_FEATURE_DAYS (read when the model runs, like
    the days, so dbt's parse does not depend on it): `all` (the default) every day of its range;
    `used` only the days something reads: the training snapshot days
    (int_snapshot_calendar.is_training_snapshot) and the range's last day, which the run
    scores. A long history then costs its sampled days, not every customer-day; the other
    days of the range are left empty.
#}
{% macro feature_days() %}
    {%- set value = env_var('PLATFORM_FEATURE_DAYS', 'all') if execute else 'all' -%}
    {{- return(checked_choice('PLATFORM_FEATURE_DAYS', value, ['all', 'used'])) -}}
{% endmacro %}

{# The last day of the run's range as a SQL date; without a range, the calendar's `last_day` column. #}
{% macro build_last_day() -%}
    {%- if builds_day_range() -%}
        date '{{ build_day("last_day") }}'
    {%- else -%}
        last_day
    {%- endif -%}
{%- endmacro %}

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
    Whether an event dated `date_column` and loaded `loaded_column` counts on the SQL day `day`:
    in the 90-day window up to it (the longest feature window) and known by its end. The
    point-in-time rule every windowed event count shares.
#}
{% macro known_in_window(date_column, loaded_column, day) -%}
    {{ date_column }} between {{ day }} - 89 and {{ day }} and {{ loaded_column }} <= {{ day }}
{%- endmacro %}
