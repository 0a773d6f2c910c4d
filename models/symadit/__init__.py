"""SymADiT: symmetry-aware latent flow matching over Wyckoff orbits (methods.md, section 1).

Modules: :mod:`.config` (every setting), :mod:`.data` (tokens → tensors, training
distributions), :mod:`.autoencoder` (stage 1), :mod:`.flow` (stage 2, latent DiT),
:mod:`.model` (the bundled model), :mod:`.sampling` (constrained decoding and expansion),
:mod:`.validation`, :mod:`.api` (``train`` / ``sample``, the registry's entry points).
"""
