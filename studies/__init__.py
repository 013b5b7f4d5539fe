"""One-off probes of finished experiments, each supporting an entry of docs/results.md. Run from the
repository's root: `python -m studies.NAME EXP ...`. Not tests; not maintained benchmarks (benchmarks/)."""
