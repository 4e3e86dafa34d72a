"""Symbolic shapes are exactly right: for every op of the registry and for random chains of
shape-changing ops, the inferred symbolic shape evaluated at random allowed sizes equals the real
module's output shape (meta device). Derandomised: the same cases every run; more in
benchmarks/shape_fuzz.py."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shape_cases as C

OPS = C.registry_ops()
PER_OP = 30
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_every_op_of_the_registry_has_a_case():
    assert sorted(set(OPS) - set(C.OP_CASES)) == []


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("name", OPS)
def test_op_shape_rule_matches_torch(name):
    accepted = []

    @settings(max_examples=PER_OP, **SETTINGS)
    @given(st.data())
    def run(data):
        accepted.append(C.check_op_case(data.draw, name))

    run()
    assert len(accepted) == PER_OP
    assert sum(accepted) >= PER_OP // 3, f"{name}: only {sum(accepted)} of {PER_OP} random calls were valid"


def test_random_chains_match_torch():
    accepted = []

    @settings(max_examples=300, **SETTINGS)
    @given(st.data())
    def run(data):
        accepted.append(C.check_chain(data.draw, C.chain_spec(data.draw)))

    run()
    assert sum(accepted) >= 200, f"only {sum(accepted)} of {len(accepted)} chains were valid"
