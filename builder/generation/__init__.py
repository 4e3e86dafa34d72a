"""Text generation for language models: the sampling loop, and the key/value cache derived from the graph."""
