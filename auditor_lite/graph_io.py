"""Input and output names of every exported graph, in one place (docs/artifact.md).

Export writes them into the graphs and ``manifest.json``'s contract; the runtime feeds and reads
the graphs by them; calibration feeds the same graphs. Torch-free and dependency-free, so that every
layer can import it.

One architecture, ``grounded``: ``context`` (stage A, once per clip and audited frame: the
referent map and the null logit) and ``masks`` (stage B, per candidate mask). The first,
pooled-text architecture (``auditor``: a fused graph fed a sentence embedding) is retired; its model
directories are refused at load with "exported for an older runtime".
"""

from __future__ import annotations

GROUNDED = "grounded"
RETIRED = "auditor"     # the pooled-text architecture: named only to refuse it clearly
ARCHITECTURES = (GROUNDED,)

MASK_DIM = "N"          # candidate masks: the one dynamic axis of the auditor graphs
TOKEN_DIM = "T"         # tokens: the text encoder's dynamic axis

HEAD_OUTPUTS = ("iou", "type_logits", "action_logits")
CONTEXT_OUTPUT = "context"
MASKS_INPUTS = ("context", "masks", "key_frame")

GRAPH_INPUTS = {
    GROUNDED: {
        "context": ("frames", "key_index", "log_mel", "tokens", "token_mask", "cell_motion"),
        "masks": MASKS_INPUTS,
    },
}
GRAPH_OUTPUTS = {"context": (CONTEXT_OUTPUT,), "masks": HEAD_OUTPUTS,
                 "text_encoder": ("text_embedding", "token_states")}
TEXT_ENCODER_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = {"cell_motion"}   # only grounders that read the block-matched cell motion


def graph_inputs(architecture: str, graph: str, cell_motion: bool = False) -> tuple[str, ...]:
    """The input names of ``graph`` of a model of ``architecture``, in the graph's order."""
    if graph == "text_encoder":
        return TEXT_ENCODER_INPUTS
    try:
        names = GRAPH_INPUTS[architecture][graph]
    except KeyError:
        raise ValueError(f"no {graph!r} graph in the {architecture!r} architecture") from None
    return tuple(n for n in names if n not in OPTIONAL_INPUTS or (n == "cell_motion" and cell_motion))
