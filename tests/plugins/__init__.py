"""Code that exists only for the tests, e.g. an experiment labctl does not ship."""
