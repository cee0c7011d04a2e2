"""Experiments over many runs: the matrix, the pacer sweep, stress and usability studies."""
