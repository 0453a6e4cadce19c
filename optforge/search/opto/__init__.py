"""`opto`: Trace/OPTO with OptoPrime (Cheng, Nie, Swaminathan, "Trace is the Next AutoDiff",
NeurIPS 2024, arXiv 2406.16218): the rule source is the trainable parameter, one evaluation at
`trace` detail is the oracle, and an LLM reads the evaluation's sections and suggests new values.

What exists (pure parts, tested in tests/search/opto/):
- `params.OptoConfig`: the `strategy:` keys (memory_size, split_constants, chains, mask, detail,
  per-section character budgets), through `optforge.config.build_strategy_params`;
- `variables`: the rule as the code variable `rule`, with `split_constants` each numeric
  UPPER_CASE constant its own variable; the projection of a suggestion (static rule check, constants
  cast to their type and held to the hyperparameter conventions), a constant written into its
  literal only, and the change record lineage shows ("constant BETA2 0.999 -> 0.995");
- `suggestion`: the OptoPrime answer reader, on top of `optforge.llm.parse.read_answer`: JSON
  (bare, fenced, or the outermost braces), XML, TERMINATE; `Outcome` update / no_change / invalid
  with the reason;
- `memory`: the FIFO of past (variables, feedback) pairs, rendered oldest first, exact JSON state;
- `sections`: #Code, #Documentation, #Variables, #Inputs, #Others, #Outputs, #Feedback from an
  `EvaluationResult`, each within its budget, masked sections empty, tasks named only by the
  trace's "task i" labels; `prompt`: the chat messages
  (templates in optforge/llm/prompts/opto/).

What remains, once the strategy platform (issue 17) is in main: the Strategy itself (per chain:
build the prompt, call the LLM once, parse, propose the candidate with its change record in the
note, feed an invalid answer's reason back once as the next feedback, add (variables, feedback) to
the memory after the prompt is built), `chains` filling the engine's slots with one RNG and memory
each and the best chain's state for `show`, the `TaskInput`s of the search suite, the oracle
request at `detail` on the search suite or a minibatch of it, state for resume, registration as
`strategy: {name: opto}`, configs/opto.yaml and configs/opto_masked.yaml, docs/llm.md's rendered
prompt and the README row.
"""
