"""Helpers shared by the tests that compare seeds with torch.optim (tests/seeds, tests/export)."""


def torch_ns_fp64(grad, ns_coefficients, ns_steps, eps):
    """torch.optim.Muon's Newton-Schulz, in float64 instead of bfloat16 (patched over
    torch.optim._muon._zeropower_via_newtonschulz so the oracle is exact to compare with)."""
    a, b, c = ns_coefficients
    x = grad.double()
    if grad.size(0) > grad.size(1):
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if grad.size(0) > grad.size(1):
        x = x.T
    return x
