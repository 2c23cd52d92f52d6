"""Online scoring: the API beside Dagster (``app``) and the assets that feed and watch it.

The server reads the champion (and a challenger) from the MLflow registry and the
online feature snapshot the ``online_features`` asset publishes; it writes every
request to an audit table in the lake, which ``serving_log``, ``online_feature_drift``
and ``rollout_report`` read back into the graph.
"""
