"""The MLIP screen: potentials, guards, the ASE and batched engines, the runner, the hull."""
