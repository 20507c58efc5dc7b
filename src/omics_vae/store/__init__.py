"""The MLflow store as the project's cache of trained models (no Kedro): ``reuse`` finds
a finished model by its training fingerprint, or trains one."""
