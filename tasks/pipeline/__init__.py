"""The loop's bookkeeping: pipeline config, run directory, selection, S.U.N., report."""
