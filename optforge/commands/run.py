"""`optforge run CONFIG.yaml [--out DIR] [--address ADDR] [--resume DIR] [--set key=value ...]`.

Builds the collaborators (store, strategy, LLM client, evaluator), starts or joins Ray, runs the
engine with a live progress line, and prints the leaderboard. Ctrl-C leaves a resumable run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from optforge.cli import UserError

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run a search (or resume one)", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", help="run config YAML (omit with --resume)")
    p.add_argument("--out", help="run directory to create (default runs/<strategy>-<time>)")
    p.add_argument("--address", help="join a Ray cluster: 'auto' or HOST:PORT (default: start Ray in-process)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run")
    p.add_argument("--force", action="store_true", help="resume even if optforge/torch/suite versions changed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set budget.max_candidates=20")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    return p


def run(args: argparse.Namespace) -> int:
    """Everything that can be wrong with the config (keys, strategy, suites, baselines) is checked
    before the run directory is created, so a failed start leaves nothing behind."""
    from optforge.config import ConfigError, load_config
    from optforge.resume import describe
    from optforge.store import Store

    store, reopen, restored = None, False, None
    try:
        if args.resume:
            if args.config:
                raise UserError("give either CONFIG or --resume RUN_DIR, not both (a resumed run keeps its config)")
            store, config, restored, reopen = _resume(args)
            if config is None:
                return 0
        else:
            if not args.config:
                raise UserError("missing CONFIG.yaml (or --resume RUN_DIR); for example: optforge run configs/seeds.yaml "
                                "(from the optforge checkout)")
            config = load_config(args.config, args.overrides)
    except ConfigError as e:
        raise UserError(str(e)) from e

    strategy, llm_holder, ctx = _build_strategy(config, store)
    make_request = _request_factory(config)
    _check_baselines(config)
    if reopen:
        _continue_search(store, strategy, args.overrides)
    if restored is not None:
        print(describe(restored, config.budget, continuing=reopen), file=sys.stderr)
    if store is None:
        out = Path(args.out or f"runs/{config.strategy_name.replace(':', '_')}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "run.db").exists() and _has_config(out):
            raise UserError(f"{out} already holds a run; resume it with: optforge run --resume {out} "
                            "(or pick another --out)")
        store = Store(out)  # a run.db without a config is a start that never began: reused
    elif args.overrides:
        store.set_meta(config=config.to_dict())  # the next resume starts from what this one runs with
        store.add_event("resume_overrides", overrides=list(args.overrides))
    llm_holder["store"] = store
    spend = None if ctx.llm_client is None else ctx.llm_client.spend
    return _execute(config, strategy, store, make_request, address=args.address or config.ray.address, quiet=args.quiet,
                    records=ctx.records, llm_spend=spend)


def _resume(args: argparse.Namespace) -> tuple[Any, Any, Any, bool]:
    """Open the run to resume and check the overrides: (store, config, what was restored, whether its
    search continues); config is None when there is nothing to do (a finished run, no budget raised)."""
    from optforge.config import RunConfig, config_from_dict
    from optforge.resume import ResumeRefused, Restored, check_overrides, continues_search
    from optforge.store import Store, StoreError

    try:
        store = Store.open(args.resume)  # read-only until every check has passed
    except StoreError as e:
        raise UserError(str(e)) from e
    if not store.config():
        raise UserError(f"cannot resume {args.resume}: it holds no stored config (the run never started); "
                        f"start it again with: optforge run CONFIG.yaml --out {args.resume}")
    stored = RunConfig.from_dict(store.config())
    config = config_from_dict(store.config(), args.overrides) if args.overrides else stored
    restored = Restored.from_store(store, stored)
    try:
        check_overrides(stored, config)
        reopen = continues_search(restored, stored, config)  # the strategy's own state: _continue_search
    except ResumeRefused as e:
        raise UserError(f"cannot resume {args.resume} as asked: {e}") from e
    if restored.status == "finished" and not reopen:
        print(f"run {args.resume} already finished ({restored.stop_reason}); nothing to do. "
              f"See: optforge show {args.resume}")
        store.close()
        return store, None, restored, False
    _check_versions(store, config, force=args.force)
    store.close()
    try:
        return Store.resume(args.resume), config, restored, reopen  # an older schema: run.db.v0 kept, then migrated
    except StoreError as e:
        raise UserError(str(e)) from e


def _continue_search(store: Any, strategy: Any, overrides: list[str]) -> None:
    """Reopen the search of a run stopped by a budget, unless the strategy's stored state says it is done."""
    from optforge.resume import reopen_search

    state = store.strategy_state()
    if state is not None:
        strategy.load_state(state)
    if strategy.done():
        raise UserError(f"cannot resume {store.run_dir} as asked: strategy '{getattr(strategy, 'name', '?')}' is done "
                        "in its stored state (it has nothing more to propose), so a larger budget cannot continue the "
                        "search; start a new run for more candidates")
    reopen_search(store, overrides=list(overrides))


def _has_config(run_dir: Path) -> bool:
    from optforge.store import Store

    with Store.open(run_dir) as existing:
        return bool(existing.config())


def _build_strategy(config: Any, store: Any = None) -> tuple[Any, dict, Any]:
    """Build (and so validate) the strategy before any run directory exists, with a context holding the
    services it declared (`@needs`): an LLM client only when it needs one or the config sets one."""
    from optforge.search.context import StrategyContext
    from optforge.search.registry import build_strategy, needs_of

    holder: dict[str, Any] = {}
    try:
        wanted = needs_of(config.strategy_name)
    except ValueError as e:
        raise UserError(str(e)) from e
    llm = None
    if wanted & {"llm", "embedder"} or config.llm.model or config.llm.models or config.llm.replay:
        llm = _llm_client(config, holder, store)
    ctx = StrategyContext(seed=config.seed, llm_client=llm)
    try:
        return build_strategy(config.strategy_name, config.strategy_params, ctx), holder, ctx
    except ValueError as e:
        raise UserError(str(e)) from e


def _llm_client(config: Any, holder: dict, store: Any) -> Any:
    """The run's LLM client, recording into the store; on resume it starts from the recorded spend."""
    try:
        from optforge.llm import LLMClient
        from optforge.llm.budget import Budget
    except ImportError as e:
        raise UserError(f"strategy '{config.strategy_name}' needs the LLM layer, which failed to import: {e}") from e

    def recorder(call: Any) -> None:
        store = holder.get("store")
        if store is not None:
            store.record_llm_call(call)

    try:
        budget, recorded = None, None
        if store is not None:
            dollars, calls = store.llm_spend()
            budget = Budget(config.budget.max_dollars, config.budget.max_llm_calls, dollars, calls)
            recorded = store.llm_calls()  # the answers a killed run got after its last commit are used again
        return LLMClient(config, recorder=recorder, budget=budget, recorded=recorded)
    except Exception as e:  # noqa: BLE001 - config problems of the LLM layer are user errors here
        raise UserError(str(e)) from e


def _check_versions(store: Any, config: Any, *, force: bool) -> None:
    from optforge.evaluators.scoring import check_score_version
    from optforge.store import versions

    problems = []
    saved = store.meta("versions", {}) or {}
    now = versions()
    for key in ("optforge", "torch"):
        if saved.get(key) and saved[key] != now[key]:
            problems.append(f"{key} {saved[key]} -> {now[key]}")
    if saved:  # a run from before score versions were recorded was scored with version 1
        why = check_score_version(saved.get("score_version"))
        if why:
            problems.append(why)
    for suite, version in (store.meta("suite_versions", {}) or {}).items():
        current = _suite_version(suite)
        if current != version:
            problems.append(f"suite '{suite}' {version} -> {current}")
    if problems and not force:
        raise UserError("cannot resume: " + "; ".join(problems) + ". Scores would not be comparable; "
                        "pass --force to resume anyway")


def _check_baselines(config: Any) -> None:
    """Re-run tuned AdamW on one seed per task of every suite the run scores on and compare with
    the stored curves (`baselines_check`: refuse | warn | off), before anything is written."""
    from optforge.evaluators.baselines import BaselineError, verify_for_run
    from optforge.funnel import run_suites

    if config.baselines_check == "off":
        return
    suites = run_suites(config)
    print(f"checking the stored AdamW baselines of {', '.join(suites)} on this machine "
          "(baselines_check: off skips this)", file=sys.stderr)
    try:
        warnings = verify_for_run(suites, config.baselines_check)
    except BaselineError as e:
        raise UserError(str(e)) from e
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def _suite_version(suite: str) -> str:
    from optforge.evaluators.tasks import get_suite

    return str(get_suite(suite).version)


def _execute(config: Any, strategy: Any, store: Any, make_request: Any, *, address: str | None, quiet: bool,
             records: Any = None, llm_spend: Any = None) -> int:
    from optforge.engine import Engine, RunError
    from optforge.scheduler import start_ray
    from optforge.evaluators import evaluate

    progress = None if quiet else _ProgressLine(config.budget.max_candidates)
    print(f"run directory: {store.run_dir}", file=sys.stderr)
    start_ray(address, num_cpus=config.ray.num_cpus or max(config.slots, 1), num_gpus=config.ray.num_gpus)
    engine = Engine(config, strategy, store, evaluate, make_request=make_request, suite_version=_suite_version,
                    progress=progress, records=records, llm_spend=llm_spend)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = engine.run()
    except RunError as e:
        log.debug("the error that ended the run", exc_info=e.__cause__)
        print(f"optforge run: the run failed: {e} {_error_advice(e.__cause__, store.run_dir)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if progress is not None:
            progress.close()
    from optforge.commands.show import print_leaderboard

    print_leaderboard(store, config, top=10)
    if summary.failure:
        print(f"optforge run: the run stopped: {summary.failure}\n"
              "Every score is measured against this rule, so the run cannot go on. `optforge doctor` checks the "
              f"sandbox and a real evaluation; fix the cause, then start a new run. Details: optforge show {store.run_dir}",
              file=sys.stderr)
        return 1
    if summary.interrupted:
        print(f"interrupted; continue with: optforge run --resume {store.run_dir}", file=sys.stderr)
        return 130
    note = summary.budget_note()
    print(f"stopped: {summary.stop_reason}{f' ({note})' if note else ''}. Details: optforge show {store.run_dir}")
    return 0


def _error_advice(cause: BaseException | None, run_dir: Any) -> str:
    """What to do after an error ended the run (its store says `failed`, with the reason)."""
    from optforge.llm import ReplayError

    if isinstance(cause, ReplayError):
        return ("(stored as status failed.) Replay the recorded run with exactly its config (`optforge show RECORDED_RUN "
                "--json` prints it), or start a new run without llm.replay to ask the model.")
    return (f"(stored as status failed; -v prints the traceback.) Fix the cause, then continue with: "
            f"optforge run --resume {run_dir}")


def _request_factory(config: Any) -> Any:
    """EvalRequests that carry their suite's baseline curves (a remote node needs no cache). Loading
    them all up front also fails fast, before anything is written, when a suite is unknown or has no
    baselines."""
    from optforge.evaluators import EvalRequest, baseline_payload, wd_grid_for
    from optforge.evaluators.tasks import get_suite
    from optforge.funnel import resolve_stage

    payloads: dict[str, Any] = {}
    for stage in config.stages:
        suite, _, tune_wd = resolve_stage(stage, config)
        try:
            if suite not in payloads:
                get_suite(suite)  # an unknown name says so, before any advice about its baselines
                payloads[suite] = baseline_payload(suite)
            wd_grid_for(payloads[suite], tune_wd=tune_wd, stage=stage.name, suite=suite)
        except Exception as e:  # noqa: BLE001 - unknown suite or missing baselines: the user must act
            raise UserError(f"stage '{stage.name}' uses suite '{suite}': {e}") from e

    def make_request(**fields: Any) -> Any:
        return EvalRequest(baselines=payloads[fields["suite"]], **fields)

    return make_request


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _ProgressLine:
    """One status line on stderr, redrawn in place on a terminal, every 10 s otherwise."""

    def __init__(self, max_candidates: int | None = None) -> None:
        self.max_candidates = max_candidates
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 10:
            return
        self.last = now
        best = "-" if p.best_fitness is None else f"{p.best_fitness:+.3f} ({p.best_id})"
        fails = ", ".join(f"{k} {v}" for k, v in sorted(p.failures.items())) or "none"
        eta = "-" if p.eta_s is None else _hms(p.eta_s)
        # candidates against budget.max_candidates, rollouts (POLCA, OPTO and MoH) apart; the ETA is when
        # the first budget runs out at the rate so far, not when the strategy ends by itself (MoH's
        # n_iterations, say)
        cands = f"candidates {p.candidates}" + ("" if self.max_candidates is None else f"/{self.max_candidates}")
        rollouts = p.proposed - p.candidates
        line = (f"[{p.phase}] {cands}" + (f", rollouts {rollouts}" if rollouts else "") + f" | evaluations done {p.done}, "
                f"in flight {p.in_flight}, queued {p.queued} | best {best} | failures: {fails} | "
                f"{_hms(p.elapsed_s)} elapsed, budget ETA {eta}")
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line[:200])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
