"""OptoPrime's chat messages from rendered sections and memory (templates in optforge/llm/prompts/opto/).

The order follows OptoPrime (Cheng, Nie, Swaminathan, NeurIPS 2024, arXiv 2406.16218;
`opto/optimizers/optoprime.py`): the system message explains the sections and asks for JSON
`{"reasoning", "suggestion"}` or `TERMINATE`; the user message is the problem instance (#Instruction,
#Code, #Documentation, #Variables, #Inputs, #Others, #Outputs, #Feedback), then the memory's past
(variables, feedback) pairs, then "Your response:". OptoPrime's `#Constraints` is not a section of
its own: the rule contract, the code variable's constraint, is in #Documentation.
"""

from __future__ import annotations

from typing import Mapping

from optforge.llm.prompts import load_template, render


def build_messages(sections: Mapping[str, str], memory: str = "") -> list[dict[str, str]]:
    """The system and user messages of one step: `sections` from `sections.render_sections`,
    `memory` from `memory.Memory.render` ("" for none)."""
    user = render("opto/opto_user", instruction=load_template("opto/opto_instruction").strip(),
                  code=sections["Code"], documentation=sections["Documentation"],
                  variables=sections["Variables"], inputs=sections["Inputs"], others=sections["Others"],
                  outputs=sections["Outputs"], feedback=sections["Feedback"],
                  memory=render("opto/opto_memory", examples=memory.strip()) if memory.strip() else "")
    return [{"role": "system", "content": load_template("opto/opto_system").strip() + "\n"},
            {"role": "user", "content": user.strip() + "\n"}]
