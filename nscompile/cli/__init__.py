"""The command line, one module per command group; `main` registers them. Only this layer
imports argparse, and nothing imports it but `nscompile/__main__.py`.
"""
