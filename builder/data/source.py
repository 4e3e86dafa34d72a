"""The contract of a data source that builds its own splits (like a Hugging Face `datasets` builder, which
declares its features and splits and generates examples): one class, one file per source.

    class ImageSource(Source):           # builder/data/images.py
        name, keys = "images", (...)
        def check(self, cfg) -> layout   # the keys, checked; nothing read
        def load(self, cfg, input_names) -> Data
        def for_model(self, path, layout, input_names) -> (fields, names, truth)

`load` returns the splits (builder.data.dataset.Dataset or a subclass that decodes or streams batches) and
`info`: `layout` (what travels with the model: checkpoint `data_layout`, ONNX `builder.data`), `inputs`
(the fields' names, builder.data.naming), `classes`. `for_model` reads a file given to `build predict` or
`build evaluate` by that layout. The numeric readers (csv, npz, npy, idx, the built-in toys) are plain
functions returning `(fields, n_inputs, info)`, split and prepared by builder.data.load_data.
"""
from __future__ import annotations


class Source:
    name: str = ""
    keys: tuple = ()  # its own train.data keys (the common ones are builder.data.dataset.COMMON_KEYS)

    @staticmethod
    def builds_splits(cfg: dict) -> bool:
        """Whether `load` builds the splits for this section (else a reader's rows go through load_data)."""
        return True

    def check(self, cfg: dict) -> dict:
        raise NotImplementedError

    def load(self, cfg: dict, input_names=None):
        raise NotImplementedError

    def for_model(self, path, layout: dict, input_names):
        raise NotImplementedError
