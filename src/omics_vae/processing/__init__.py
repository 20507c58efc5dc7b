"""Processing: raw data to model input and its reports, without Kedro.

Single-cell counts, one module per step: ``validation`` (configured keys and raw counts,
with ``counts`` reading every value), ``qc`` (cell and gene filters and their summary),
``normalisation``, ``hvg`` (highly variable genes), ``split`` (train/val/test) and
``figures`` (the QC figure). Each step takes the validated ``data_processing`` block
(``omics_vae.schemas.data_processing.DataProcessingParams``) or plain values.

Paired tables: ``paired`` holds the steps of both platforms under the validated
``paired.processing`` block, built from the single-table operations of
``omics_vae.data.paired``.

Memory policy of the single-cell steps, chosen because single-cell matrices are large:
no step modifies a matrix in place, and no step copies one it does not change. Each step
returns a new AnnData whose annotations (``obs``, ``var``, ``uns``) are its own copies
while unchanged matrices are shared with its input. A caller can keep using any step's
input, and the chain never holds more copies of the counts than a plain scanpy script
would. Subsets are sliced once (``annotations.subset``, not a view's ``.copy()``), and
the log-normalised values share the counts' index arrays: at a million cells the peak
is about 2.7 times the CSR counts, the whole process included (docs/benchmarks.md §5).
"""

from omics_vae.processing.errors import DataProcessingError

__all__ = ["DataProcessingError"]
