"""Scoring: the ``Scorer`` interface, the lexicon baseline, and (issue 3) the attention model."""
