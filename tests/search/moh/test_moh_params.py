"""`strategy:` keys of moh: types, checks naming the key, CPU-scaled defaults."""

import pytest

from optforge.search.moh.params import FLOORS, REFERENCE, MohConfig, cpu_defaults


def test_defaults_scale_with_cpus_between_the_floors_and_the_reference():
    assert cpu_defaults(1) == {"n_iterations": 2, "pop_size": 4, "max_evals_per_subtask": 16}
    assert cpu_defaults(32) == {"n_iterations": 5, "pop_size": 5, "max_evals_per_subtask": 500}
    assert cpu_defaults(64) == REFERENCE == cpu_defaults(512)
    assert all(cpu_defaults(1)[k] >= v for k, v in FLOORS.items())
    cfg = MohConfig.from_params({})
    assert (cfg.n_iterations, cfg.pop_size, cfg.max_evals_per_subtask) == tuple(cpu_defaults().values())


def test_explicit_subtasks_and_weights():
    cfg = MohConfig.from_params({"subtasks": {"small": ["a"], "big": ["b", "c"]}, "weights": {"small": 1, "big": 3},
                                 "n_iterations": 2, "seed_procedures": ["evolve"], "search_seeds": [7, 8]})
    assert cfg.subtasks == {"small": ("a",), "big": ("b", "c")}
    assert cfg.weights == {"small": 1.0, "big": 3.0}
    assert cfg.n_iterations == 2 and cfg.seed_procedures == ("evolve",) and cfg.search_seeds == (7, 8)


@pytest.mark.parametrize("params, key", [
    ({"group_by": "size"}, "strategy.group_by"),
    ({"weights": "size"}, "strategy.weights"),
    ({"weights": {"a": -1}}, "strategy.weights"),
    ({"subtasks": {"a": ["x"]}, "weights": {"b": 1}}, "strategy.weights"),
    ({"subtasks": {"a": []}}, "strategy.subtasks.a"),
    ({"n_iterations": 0}, "strategy.n_iterations"),
    ({"llm_calls_per_run": 0}, "strategy.llm_calls_per_run"),
    ({"cpu_s": 0}, "strategy.cpu_s"),
    ({"seed_rules": ["nope"]}, "strategy.seed_rules"),
    ({"seed_procedures": ["nope"]}, "unknown procedure 'nope'"),
    ({"search_seeds": [1, 1]}, "strategy.search_seeds"),
    ({"pop_size": 2.5}, "strategy.pop_size"),
    ({"colour": 1}, "strategy.colour"),
])
def test_bad_keys_are_refused_naming_the_key(params, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        MohConfig.from_params(params)


def test_a_procedure_file_can_seed(tmp_path):
    path = tmp_path / "best.py"
    path.write_text('"""Mine."""\n\ndef improve(population, utility, llm, task):\n    return population.get(0)\n')
    assert MohConfig.from_params({"seed_procedures": [str(path)], "meta_procedure": str(path)}).meta_procedure == str(path)


def test_the_shipped_configs_build():
    from pathlib import Path

    from optforge.config import load_config

    root = Path(__file__).resolve().parents[3]
    for name in ("moh.yaml", "moh_smoke.yaml"):
        cfg = load_config(root / "configs" / name)
        assert cfg.strategy_name == "moh"
        MohConfig.from_params(cfg.strategy_params)
