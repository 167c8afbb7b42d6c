"""Saving and loading, in modules that import one way only.

- :mod:`xpnet.io.codec`: safetensors/``.npz`` bytes, digests, format sniffing, strict parsing
  (imports nothing of xpnet);
- :mod:`xpnet.io.schema`: what the metadata and arrays must hold (format version, fields);
- :mod:`xpnet.io.arrays`: a model's parameters and buffers as named host arrays, and back;
- :mod:`xpnet.io.writer`: :func:`~xpnet.io.writer.save_model` (used by ``Sequential.save``);
- :mod:`xpnet.io.reader`: :func:`~xpnet.io.reader.read_checkpoint`, verified;
- :mod:`xpnet.io.loader`: :func:`~xpnet.io.loader.load_model`, the only one importing the model;
- :mod:`xpnet.io.training_state`: :class:`~xpnet.io.training_state.TrainingCheckpointer`.

This ``__init__`` imports none of them, so that importing the writer from the model never runs
the loader (which imports the model). The public names are re-exported by
:mod:`xpnet.checkpoint`.
"""
