"""reading the input: from a data folder (or a model's layers in memory) to one layer's patterns

- `inputs`: model config, prompt index, the prompts that can be rendered, layer/head selection
- `npz`: reading one layer of an `activations.npz` and checking it; `zipdir`: where a zip member's
  bytes are (central directory, local header); `inflate`: one-call inflate and CRC-32 (libdeflate)
- `handover`: the layers `run` computes, handed to the workers in memory or through a spill folder
"""
