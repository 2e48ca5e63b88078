"""The floor every other subpackage stands on: the paper's protocol (``protocol``), the
package's errors (``errors``), atomic file writes (``files``) and the statistics of a
run's predictions (``stats``: DeLong, paired tests, threshold measures)."""
