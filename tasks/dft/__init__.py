"""DFT: atomate2 makers, the work directory, SLURM submission, the node side, collection."""
