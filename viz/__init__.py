"""Pictures of a network: the forward graph (forward), the autograd graph of one real training step
(step, autograd_walk, backward, grad_heat, grad_fn_names), an exported ONNX file (onnx_view), and the
graphviz rendering they share (dot_render, labels). Reads the built graph and module; never imports the
ONNX package `export`."""
