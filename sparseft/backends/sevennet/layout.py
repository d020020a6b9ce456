"""How sevenn names its weights (SevenNet-0 layout): kinds and layers for the catalogue.

Every weight sits in an e3nn module the shared catalogue handles: ``Linear`` (species
embedding, self-connection, self-interactions, readout), ``FullyConnectedNet`` (the radial
weight networks; the last layer split by the convolution path it weights) and the Bessel
coefficients. The convolutions' tensor products have no weights of their own.
"""

from __future__ import annotations

from ...blocks import Layout

KIND_RULES = (
    (r"^net\.onehot_to_feature_x\.", "embedding"),
    (r"^net\.edge_embedding\.", "radial"),
    (r"^net\.\d+_convolution\.weight_nn\.", "radial"),
    (r"^net\.\d+_self_connection_intro\.", "skip"),
    (r"^net\.\d+_self_interaction_1\.", "linear_up"),
    (r"^net\.\d+_self_interaction_2\.", "linear"),
    (r"^net\.reduce_", "readout"),
)

LAYOUT = Layout(
    kind_rules=KIND_RULES,
    layer=r"^net\.(\d+)_",
    conv_sibling="convolution",
    known_vectors=(r"^net\.edge_embedding\.basis_function\.coeffs$",),
)
