"""Build training sets with an LLM: generate records (JSON mode), validate and calibrate, convert, merge, dedupe."""
