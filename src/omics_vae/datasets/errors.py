"""The error the project's datasets raise on purpose."""

from __future__ import annotations

from kedro.io.core import DatasetError

from omics_vae.errors import ProjectError


class DatasetInputError(ProjectError, DatasetError):
    """A file or dataset argument the project's datasets refuse, with the fix in the message.

    A ``DatasetError`` (what Kedro and its users catch) that the command line prints
    without a traceback; Kedro passes it on as raised, where it wraps other exceptions.
    """
