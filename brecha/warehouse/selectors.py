"""The dbt selections the pipeline builds in turn (`brecha run`, the Airflow DAG and the gate ledger read them here)."""

from __future__ import annotations

# Marts over ml.* (predictions): built after `brecha train`.
PREDICTION_MARTS = "tag:needs_predictions"
# Marts over ml.district_clusters: also tagged needs_predictions (so every selector of the prediction marts keeps
# working; they are empty until the cluster step has run), rebuilt after the cluster step.
CLUSTER_MARTS = "tag:needs_clusters"
