"""The comparison report: evaluating every model on the Test material, tables and plots."""
