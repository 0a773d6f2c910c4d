"""The pipeline's stages as plain functions, in wings.

``core`` (what every stage stands on), ``ingest``, ``evaluate``, ``mlip``, ``dft`` and
``pipeline`` (the loop's bookkeeping); see the README's architecture section.
"""
