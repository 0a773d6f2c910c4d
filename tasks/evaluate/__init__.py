"""Evaluation: validity, uniqueness and novelty, symmetry and distribution metrics, CSP."""
