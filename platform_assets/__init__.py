"""churn-platform: the Dagster code location (see ``platform_assets.definitions``).

Importing the package imports nothing of the platform: dbt loads its Delta source plugin
(``platform_assets.delta_source``) in every dbt process, where importing Dagster, MLflow
or the definitions would cost seconds per dbt invocation.
"""

import warnings

# Known and intended: daily_pipeline runs one day per run, while the raw assets alone
# backfill any range in one run; monitoring checks are partitioned (a preview feature);
# integer features in the model signature are counts, which are never missing; the first
# horizon of model_performance days maps to predictions before the first partition (a beta
# parameter of TimeWindowPartitionMapping allows it).
warnings.filterwarnings("ignore", message="Asset job daily_pipeline materializes assets with varying BackfillPolicies")
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
warnings.filterwarnings("ignore", message="Parameter `allow_nonexistent_upstream_partitions`")
