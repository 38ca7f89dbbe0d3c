"""Statistics over run records: what a group of seed repeats scores, how groups compare, what they cost."""
