"""The .ns language: AST, parser (the only module that imports lark), checker, unparse, naming.

Imports the base package (`nscompile.errors`, `files`, `resources`), the standard library and lark.
"""
