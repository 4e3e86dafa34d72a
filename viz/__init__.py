"""Pictures of a network: the forward graph (forward), the autograd graph of one real training step
(step, step_inputs, autograd_walk, backward, backward_fold, grad_heat, grad_fn_names), the gradient-flow
chart (grads_chart), an exported ONNX file (onnx_view), the folding that keeps any of them readable
(fold), the interactive HTML page (html_view) and the graphviz rendering they share (dot_render, labels,
preparation). Reads the built graph and module; never imports the ONNX package `export`."""
