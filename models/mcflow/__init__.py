"""MCFlow: one multimodal flow model for de novo generation, CSP and atom-type generation.

Entry points are in :mod:`models.mcflow.api` (``train`` and ``sample``).
"""
