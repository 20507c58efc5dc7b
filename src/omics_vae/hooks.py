"""Project hooks."""

from kedro.framework.hooks import hook_impl

from omics_vae.params import validate_parameters


class ParameterValidationHooks:
    """Checks every parameter block against its schema before any node runs."""

    @hook_impl
    def after_context_created(self, context) -> None:
        validate_parameters(context.params)
