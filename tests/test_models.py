"""Every architecture builds, has the advertised size, and maps (N, 28, 28, 1) to (N, 10)."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist_edge.common.errors import UsageError
from fmnist_edge.train.archs import ARCHS
from fmnist_edge.train.models import build_model, describe


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_classifies(arch):
    model = build_model(arch)
    probs = model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_miniresnet_is_the_notebooks_model():
    d = describe(build_model("miniresnet"))
    assert d["params"] == 12_264_458
    assert 590e6 < d["macs"] < 600e6  # "about 595M multiply-accumulates"


@pytest.mark.parametrize("arch", [a for a in ARCHS if a.startswith("edge")])
def test_edge_variants_fit_a_pi_budget(arch):
    mini = describe(build_model("miniresnet"))["macs"]
    assert describe(build_model(arch))["macs"] <= mini / 10


def test_unknown_arch():
    with pytest.raises(UsageError, match="unknown --arch 'resnet9000'"):
        build_model("resnet9000")
