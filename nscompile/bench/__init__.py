"""`nscompile bench`: timing tools and the side-by-side measurement of a compiled spec.

Imports `nscompile.learn` and everything below it.
"""
