"""Evaluate models: metrics (`llmkit.eval.metrics`), side-by-side comparisons of a base and a tuned model
(`llmkit.eval.compare`, which loads models and so torch) and reports (`llmkit.eval.report`)."""
