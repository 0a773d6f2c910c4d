"""Crystal representations shared by the models: Wyckoff tokens (SymADiT), atom order (MCFlow)."""
