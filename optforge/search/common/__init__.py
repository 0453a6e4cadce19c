"""Code shared by search strategies: rendering results as prompt text (`render`)."""
