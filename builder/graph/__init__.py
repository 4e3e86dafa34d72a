"""The graph stage: one network body -> a networkx graph of NodeRecords, as a row of passes
(expand, wiring, infer, sharing; run by pipeline.build_network)."""
