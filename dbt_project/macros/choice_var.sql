{#
    The value of the var `name` (default `default`), which must be one of `choices`:
    anything else stops the build, naming the var and the values it takes.
#}
{% macro choice_var(name, default, choices) %}
    {%- set value = var(name, default) -%}
    {%- if value not in choices -%}
        {{ exceptions.raise_compiler_error(
            "var " ~ name ~ " must be '" ~ choices | join("' or '") ~ "', got '" ~ value ~ "'"
        ) }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}
