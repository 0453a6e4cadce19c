"""The sandbox: run a trusted job function on untrusted source, within limits.

    run(source, job, payload, policy, limits) -> SandboxResult

It knows nothing about optimizers: the job ("module:function", called inside the worker as
function(source, payload) -> dict | (dict, {name: ndarray})) does. See docs/security.md.
"""

from optforge.sandbox.policy import Policy, Violation, check_source
from optforge.sandbox.result import LAYERS, JobFailure, Limits, SandboxResult
from optforge.sandbox.rule_policy import RULE_POLICY
from optforge.sandbox.runner import mode_for, run

__all__ = [
    "LAYERS",
    "RULE_POLICY",
    "JobFailure",
    "Limits",
    "Policy",
    "SandboxResult",
    "Violation",
    "check_source",
    "mode_for",
    "run",
]
