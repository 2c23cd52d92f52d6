"""The names of the monitoring checks the retraining sensor acts on: shared by the checks and the sensor."""

FEATURE_DRIFT_CHECK = "feature_drift"
PREDICTION_DRIFT_CHECK = "prediction_drift"
PERFORMANCE_CHECK = "performance_decay"
