"""`bench data`: prepare large corpora into streamable litdata datasets and measure the loader."""
