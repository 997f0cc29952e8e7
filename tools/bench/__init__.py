"""`make bench`: how fast a scan and a complete are on the whole stack, and how that
compares with what the same work costs with nothing of ours around it."""
