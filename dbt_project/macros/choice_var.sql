{#
    `value`, which must be one of `choices`: anything else stops the build, naming where the
    value came from (`name`) and the values it takes.
#}
{% macro checked_choice(name, value, choices) %}
    {%- if value not in choices -%}
        {{ exceptions.raise_compiler_error(
            name ~ " must be '" ~ choices | join("' or '") ~ "', got '" ~ value ~ "'"
        ) }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}

{# The value of the var `name` (default `default`), which must be one of `choices`. #}
{% macro choice_var(name, default, choices) %}
    {{ return(checked_choice('var ' ~ name, var(name, default), choices)) }}
{% endmacro %}
