"""Parameter blocks are validated against their schemas, naming the bad key."""

import pytest
import yaml

from omics_vae.params import InvalidParametersError, validate_parameters
from omics_vae.schemas import PARAMETER_SCHEMAS
from tests.conftest import PROJECT_ROOT


def _base_parameters() -> dict:
    params = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def test_committed_parameters_match_their_schemas():
    params = _base_parameters()
    validate_parameters(params, PARAMETER_SCHEMAS)
    assert set(PARAMETER_SCHEMAS) <= set(params)


def test_unknown_key_is_named_with_its_full_path():
    params = _base_parameters()
    params["data_processing"]["qc"]["min_genes_per_cel"] = 10
    with pytest.raises(InvalidParametersError, match=r"data_processing\.qc\.min_genes_per_cel"):
        validate_parameters(params, PARAMETER_SCHEMAS)


def test_wrong_type_is_named_with_the_value_given():
    params = _base_parameters()
    params["data_processing"]["hvg"]["n_top_genes"] = "many"
    with pytest.raises(InvalidParametersError) as error:
        validate_parameters(params, PARAMETER_SCHEMAS)
    assert "data_processing.hvg.n_top_genes" in str(error.value)
    assert "'many'" in str(error.value)


def test_split_fractions_must_sum_to_one():
    params = _base_parameters()
    params["data_processing"]["split"].update(train=0.9, val=0.2, test=0.1)
    with pytest.raises(InvalidParametersError, match="train \\+ val \\+ test must equal 1"):
        validate_parameters(params, PARAMETER_SCHEMAS)
