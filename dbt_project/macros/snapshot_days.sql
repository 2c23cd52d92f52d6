{#
    The snapshot days a run builds. Dagster passes a daily partition range as the
    environment variables PLATFORM_BUILD_FIRST_DAY and PLATFORM_BUILD_LAST_DAY (inclusive;
    platform_assets/delta_source.py, build_days); without them a run builds every day.

    The filter follows the vars, not is_incremental(): a first partitioned run into an
    empty table builds only its days, and a run without vars (or with --full-refresh)
    rebuilds the whole history. Incremental models replace whole snapshot days
    (delete+insert with unique_key = the snapshot date), so a re-run day is replaced
    exactly, including customers that vanished from it.
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

{#
    `column` within the days being built, widened `look_back_days` before the first one
    (the rolling windows of a day read that much history); `true` when building every day.
#}
{% macro snapshot_days(column, look_back_days=0) -%}
    {%- if builds_day_range() -%}
        {{ column }} between date '{{ build_day("first_day") }}' - interval {{ look_back_days }} day
        and date '{{ build_day("last_day") }}'
    {%- else -%}
        true
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
