"""The one mark of an error the project raises on purpose.

Every error the project raises to refuse an input, a parameter or a state (a misspelt
block, counts that are not counts, a checkpoint that cannot be resumed, a stopped
training) derives from ``ProjectError`` as well as from the built-in class it always had
(``ValueError``, ``LookupError`` ...), so code that catches those still does. Its message
is the whole story: what is wrong, in which file or key, and the fix. The command line
(``omics_vae.cli``) prints such a message without a traceback; any other exception is a
bug and keeps its traceback.

``TrainingDryRun`` is the one deliberate exit: ``training.dry_run`` printed the plan and
the run stops there, successfully.

This module imports nothing, so every layer of the library may use it.
"""


class ProjectError(Exception):
    """An error raised on purpose, whose message says what is wrong and how to fix it.

    ``exit_code`` is what the command line exits with (1; a stopped training says 130
    or 143, as a shell does for Ctrl-C and SIGTERM).
    """

    exit_code: int = 1


class TrainingDryRun(SystemExit):
    """``training.dry_run``: the plan was validated and printed; nothing is trained.

    A ``SystemExit`` with status 0, so ``kedro run`` stops there without an error.
    """

    def __init__(self) -> None:
        super().__init__(0)
