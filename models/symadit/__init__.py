"""SymADiT: symmetry-aware latent flow matching over Wyckoff orbits (methods.md, section 1).

Modules: :mod:`.data` (tokens → tensors, training distributions), :mod:`.autoencoder`
(stage 1), :mod:`.flow` (stage 2, latent DiT), :mod:`.sampling` (constrained decoding and
expansion), :mod:`.model` (config + bundled model), :mod:`.validation`, :mod:`.api`
(``train`` / ``sample`` for the CLI).
"""

from models.symadit.api import load_symadit_config, sample, train
from models.symadit.model import SymADiT, SymADiTConfig

__all__ = ["SymADiT", "SymADiTConfig", "load_symadit_config", "sample", "train"]
