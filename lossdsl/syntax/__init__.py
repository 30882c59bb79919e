"""Stage 1: `.loss` text to an AST with spans. Torch-free."""

from lossdsl.syntax.parser import parse, parse_collecting

__all__ = ["parse", "parse_collecting"]
