"""Test-only suites for the promotion test (tests/engine/test_funnel_real.py), loaded by dotted path
`promotion_suites:search` / `promotion_suites:heldout` with this folder on sys.path (the sandboxed
job gets the same sys.path). One task each: an ill-conditioned linear regression, on which Muon's
orthogonalised update beats AdamW by many sigma_task."""

from optforge.evaluators.tasks import Suite
from optforge.evaluators.tasks.matrix import LinearRegression2D

SELECTION = (0, 1)
REPORT = (2, 3, 4, 5, 6)  # five fresh seeds: the t-test has df 4, so a several-sigma effect is clear of alpha


def search() -> Suite:
    return Suite("promo_search", "1", (LinearRegression2D(name="promo_linreg", steps=150),), SELECTION, REPORT,
                 "test-only search suite: one ill-conditioned linear regression")


def heldout() -> Suite:
    return Suite("promo_heldout", "1", (LinearRegression2D(name="promo_linreg_long", steps=200),),
                 SELECTION, REPORT, "test-only held-out suite: the regression with other data and a longer budget")
