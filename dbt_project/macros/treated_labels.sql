{#
    What training_set (and, through the outcome model's YAML, performance monitoring) does
    with labels a retention contact changed: the var `treated_labels`, `exclude` (the
    default) or `keep`. Anything else stops the build, naming the var.
#}
{% macro treated_labels() %}
    {{- return(choice_var('treated_labels', 'exclude', ['exclude', 'keep'])) -}}
{% endmacro %}
