"""The parameter schemas (pydantic, no Kedro): one module per pipeline's block. Which
schema validates which top-level block is declared by the data families
(``omics_vae.families.Family.parameters``) and ``omics_vae.context``."""
