{#
    What training_set (and, through the outcome model's YAML, performance monitoring) does
    with labels a retention contact changed: the var `treated_labels`, `exclude` (the
    default) or `keep`. Anything else stops the build, naming the var.
#}
{% macro treated_labels() %}
    {%- set value = var('treated_labels', 'exclude') -%}
    {%- if value not in ('exclude', 'keep') -%}
        {{ exceptions.raise_compiler_error("var treated_labels must be 'exclude' or 'keep', got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}
