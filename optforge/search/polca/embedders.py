"""The `embed(source)` functions POLCA's epsilon-net compares rules with (`epsilon_net` says the units).

- `behaviour_embedder`: the rule's probe updates (`ctx.rule_probe`, in the sandbox), in units of the
  step size (`epsilon_net.behaviour_embedding`); a rule the probe cannot run raises `ProbeError`;
- `text_embedder`: a text embedding of the source, unit-normalised.
"""

from __future__ import annotations

from typing import Any, Callable

from optforge.search.polca.epsilon_net import ProbeError, behaviour_embedding, unit_normalise

Embed = Callable[[str], list[float]]
"""`embed(source)` -> the rule's normalised embedding (raises ValueError or RuntimeError when it has none)."""


def behaviour_embedder(rule_probe: Callable[[str], Any]) -> Embed:
    """`embed(source)`: the rule's behaviour embedding from its probe updates (`epsilon_net`)."""
    from optforge.search.probe import ProbeFailed

    def embed(source: str) -> list[float]:
        try:
            probe = rule_probe(source)
        except ProbeFailed as e:
            raise ProbeError(str(e)) from e
        return behaviour_embedding(probe.updates, probe.lr).tolist()

    return embed


def text_embedder(embed_texts: Callable[[list[str]], list[list[float]]]) -> Embed:
    """`embed(source)`: the unit-normalised text embedding of the source."""
    def embed(source: str) -> list[float]:
        return unit_normalise(embed_texts([source])[0]).tolist()

    return embed
