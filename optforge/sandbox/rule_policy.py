"""RULE_POLICY: the default static-check policy for update rules (torch and math, nothing else).

An allow-list, not a deny-list, of syntax, names and attributes: `torch` has attributes such as
`torch.load`, `torch.hub`, `torch.os` and `torch.sys`, tensors have `.storage()` and `.numpy()`, and
Python has `match`, `global`, lambdas and f-strings; a rule needs none of them. Every seed in
`optforge/seeds/` and every program of the symbolic function library must pass
(tests/sandbox/test_policy.py checks them).
"""

from __future__ import annotations

from optforge.sandbox.policy import CORE_NODES, Policy

# beyond plain functions and arithmetic: comprehensions and generator expressions, '*' unpacking (the
# symbolic library's `torch.maximum(*_w(x, y))`), annotated constants, `with torch.no_grad():`, and
# assert/raise, which only end the rule
_RULE_NODES = CORE_NODES | frozenset(
    "ListComp SetComp DictComp GeneratorExp comprehension Starred AnnAssign With withitem Assert Raise".split()
)

# element-wise and reduction math that exists both as torch.X and as Tensor.X (in-place X_ too)
_OPS = """
abs absolute acos acosh add addbmm addcdiv addcmul addmm addmv addr all allclose amax amin aminmax angle
any arccos arcsin arctan arctan2 argmax argmin argsort asin asinh atan atan2 atanh baddbmm bernoulli
bincount bitwise_and bitwise_not bitwise_or bitwise_xor bmm ceil cholesky cholesky_inverse cholesky_solve
chunk clamp clamp_max clamp_min clip conj copysign cos cosh count_nonzero cov cross cummax cummin cumprod
cumsum deg2rad det diag diag_embed diagflat diagonal diff digamma dist div divide dot eq equal erf erfc
erfinv exp exp2 expm1 fix flatten flip fliplr flipud float_power floor floor_divide fmax fmin fmod frac
gather gcd ge ger greater greater_equal gt heaviside histc hypot i0 index_select inner inverse isclose
isfinite isinf isnan isneginf isposinf isreal kron kthvalue lcm ldexp le lerp less less_equal lgamma log
log10 log1p log2 logaddexp logaddexp2 logcumsumexp logdet logical_and logical_not logical_or logical_xor
logit logsumexp lt masked_fill masked_scatter masked_select matmul matrix_exp matrix_power max maximum
mean median min minimum mm mode moveaxis movedim msort mul multiply mv mvlgamma nan_to_num nanmean
nanmedian nanquantile nansum narrow ne neg negative nextafter norm not_equal numel outer permute pinverse
polygamma positive pow prod qr quantile rad2deg ravel reciprocal remainder renorm repeat_interleave
reshape roll rot90 round rsqrt scatter scatter_add scatter_reduce select sgn sigmoid sign signbit sin
sinc sinh slogdet softmax log_softmax sort split sqrt square squeeze std std_mean sub subtract sum svd swapaxes
swapdims t take take_along_dim tan tanh tensor_split tile topk trace transpose trapz triangular_solve
tril triu true_divide trunc unbind unflatten unique unique_consecutive unsqueeze var var_mean vdot
where xlogy relu hardshrink softshrink index_add index_copy index_fill index_put masked_fill vsplit hsplit
"""

# torch-only functions: constructors, joins, dtypes, linalg, a few nn.functional helpers
_TORCH_ONLY = """
zeros zeros_like ones ones_like full full_like empty empty_like eye arange linspace logspace tensor
as_tensor scalar_tensor stack cat concat concatenate hstack vstack dstack column_stack broadcast_tensors
broadcast_to meshgrid einsum cdist block_diag cartesian_prod combinations diag_embed rand rand_like randn
randn_like randint randint_like randperm normal poisson multinomial no_grad inference_mode is_tensor
is_floating_point is_complex is_nonzero numel result_type promote_types can_cast finfo iinfo
get_default_dtype Tensor Size dtype device tensordot chain_matmul lu lu_solve lu_unpack
float float16 float32 float64 half double bfloat16 int int8 int16 int32 int64 long short uint8 bool
complex64 complex128 cfloat cdouble pi e inf nan cosine_similarity pairwise_distance
"""

_LINALG = """
norm vector_norm matrix_norm eigh eigvalsh eig eigvals svd svdvals qr cholesky cholesky_ex inv inv_ex
solve solve_ex pinv lstsq det slogdet matrix_rank matrix_power matrix_exp multi_dot cross cond diagonal
vecdot lu lu_factor lu_solve solve_triangular householder_product tensorinv tensorsolve vander
"""

_FUNCTIONAL = """
normalize relu gelu silu softplus softsign tanh sigmoid softmax log_softmax hardtanh elu leaky_relu
cosine_similarity pad layer_norm group_norm linear conv1d conv2d
"""

# methods and fields of tensors that are not torch.X functions
_TENSOR_ONLY = """
shape dtype ndim device T mT H mH real imag data grad requires_grad is_leaf layout
dim size item tolist clone detach contiguous to type type_as float double half bfloat16 int long bool
short byte char cfloat cdouble view view_as reshape_as expand expand_as repeat fill_ zero_ copy_
new_zeros new_ones new_full new_empty new_tensor element_size nelement numel is_floating_point
is_complex is_contiguous uniform_ normal_ exponential_ geometric_ log_normal_ cauchy_ random_
sum_to_size nonzero argwhere storage_offset stride apply_ map_ index_put_ put_ masked_fill_ addcmul_
addcdiv_ lerp_ clamp_ clamp_min_ clamp_max_ sqrt_ rsqrt_ mul_ div_ add_ sub_ pow_ neg_ abs_ sign_
exp_ log_ square_ sigmoid_ tanh_ reciprocal_ copysign_ maximum minimum any all
"""

# non-tensor values a rule touches: the ctx record, dicts, lists, tuples, strings, finfo, linalg results
_OTHER_ATTRS = """
lr t role grad_norm
get items keys values setdefault pop update copy clear append extend insert index count sort reverse
join startswith endswith lower upper split strip replace isdigit
eps max min tiny resolution smallest_normal bits
eigenvalues eigenvectors U S Vh V Q R L P LU pivots values indices solution residuals rank
singular_values sign logabsdet info
"""

_BUILTINS = """
abs all any bool dict divmod enumerate filter float frozenset int isinstance issubclass len list map max
min pow print range repr reversed round set slice sorted str sum tuple zip iter next hasattr callable
complex hash id format chr ord bin hex oct True False None NotImplemented Ellipsis
Exception ValueError TypeError RuntimeError ArithmeticError ZeroDivisionError OverflowError KeyError
IndexError AssertionError NotImplementedError LookupError FloatingPointError StopIteration
"""


def _words(text: str) -> set[str]:
    return set(text.split())


def _inplace(names: set[str]) -> set[str]:
    return names | {n + "_" for n in names}


_ops = _words(_OPS)
_module_names = (
    {f"torch.{n}" for n in _ops | _words(_TORCH_ONLY)}
    | {f"torch.linalg.{n}" for n in _words(_LINALG)}
    | {f"torch.nn.functional.{n}" for n in _words(_FUNCTIONAL)}
)

RULE_POLICY = Policy(
    name="rule",
    allowed_imports=("torch", "math"),
    module_names=frozenset(_module_names),
    open_modules=("math",),
    attributes=frozenset(_inplace(_ops) | _words(_TENSOR_ONLY) | _words(_OTHER_ATTRS)),
    builtins=frozenset(_words(_BUILTINS)),
    node_types=_RULE_NODES,
)
"""Default policy for update rules: imports of torch and math; torch functions, linalg and tensor
methods from the allow-lists above; any public math function; the syntax of `_RULE_NODES` only (no
classes, match, lambda, global, try, f-strings, attribute assignment); no I/O, no dunders."""
