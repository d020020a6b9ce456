"""The batch vocabulary the core reads: one name per quantity, whatever the model family.

They are mace's names (its batches were the first); another backend's items use them too and
translate to its own model's keys inside its model wrapper.
"""

POSITIONS = "positions"  # (nodes, 3) Å
CELL = "cell"  # (3 x graphs, 3)
NODE_ATTRS = "node_attrs"  # (nodes, elements) one-hot over the model's element table
EDGE_INDEX = "edge_index"  # (2, edges): sender, receiver
SHIFTS = "shifts"  # (edges, 3) Cartesian image shift: r_receiver - r_sender + shift
UNIT_SHIFTS = "unit_shifts"  # (edges, 3) the same in cell vectors
BATCH = "batch"  # (nodes,) graph of each node
PTR = "ptr"  # (graphs + 1,) node offsets
WEIGHT = "weight"  # (graphs,) frame weight
ENERGY, FORCES, STRESS = "energy", "forces", "stress"  # labels and predictions
DISPLACEMENT = "displacement"  # (graphs, 3, 3) symmetric strain, for stress by autograd
NODE_FEATS = "node_feats"  # model output: node features of every layer, concatenated
SOURCE_FRAME = "source_frame"  # position of a frame in its Frames, for messages
