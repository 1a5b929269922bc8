"""Result caching. :mod:`codeexec.cache.keys` computes the content key of a submission."""
