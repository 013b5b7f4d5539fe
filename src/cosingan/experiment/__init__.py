"""The experiment layer: the few-shot experiment (arms x downstream tasks, with repeats) and its report."""
