"""The error of the processing steps and the files its messages send the user to."""

from __future__ import annotations

# A user's own settings: git-ignored, merged key by key over conf/base.
LOCAL_PARAMETERS_FILE = "conf/local/parameters_data_processing.yml"
LOCAL_TRAINING_PARAMETERS_FILE = "conf/local/parameters_training.yml"
LOCAL_CATALOG_FILE = "conf/local/catalog.yml"
# The catalog entry of the raw data, which the messages name.
RAW_DATA = "raw_counts"


class DataProcessingError(ValueError):
    """Raised when the raw data or the QC thresholds cannot give a usable model input."""
