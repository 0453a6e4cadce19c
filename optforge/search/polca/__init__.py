"""`polca`: POLCA (Ren, Nie, Xie, Cheng, "Stochastic Generative Optimization with LLM", arXiv 2603.14769),
priority search over noisy minibatch rollouts with an epsilon-net and a summarizer.

What exists (pure parts, tested in tests/search/polca/):
- `params.PolcaConfig`: the `strategy:` keys, through `optforge.config.build_strategy_params`;
- `memory`: the bounded priority queue of candidates with their (task, seed) rollouts, `mean` or
  `ucb` priority over [FLOOR, CEILING], ties to the newer candidate, the exploit pick with
  `min_rollouts`, and a JSON state that round-trips exactly;
- `epsilon_net`: greedy farthest-first acceptance, the `behaviour` embedding (probe updates in
  units of the step size: epsilon 1e-3 is 1e-3 relative RMS) and unit-normalised text embeddings;
- `prompt`: the OptoPrimeV2-form proposer prompt (`optforge/llm/prompts/polca/`), answered with a
  ```python block that `optforge.llm.parse` reads;
- `minibatch`: (task, seed) minibatches of the search suite, each pair once per shuffled epoch,
  with a two-integer state for exact resume;
- `summarizer`: sampling successful and failed runs, the summarizer prompt, and its XML reader
  (a failed summary keeps the old context).

What remains, once the strategy platform (issue 17) is in main: the Strategy itself (one iteration:
pop, minibatch rollouts, proposals, epsilon-net, validation, push back; `busy()` while waiting),
its state with the RNG for resume, the `text` / `text-local` embedders and the `rule_probe` call,
strategy records (summaries, rejected proposals with their distance), registration as
`strategy: {name: polca}`, the four ablation configs, show/report, and the ablation benchmark.
"""
