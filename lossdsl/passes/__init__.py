"""Stage 3: passes over the IR (checks, analysis, rewrites). Torch-free."""

from lossdsl.passes.pipeline import PIPELINE, Checked, check_reference, check_text

__all__ = ["PIPELINE", "Checked", "check_text", "check_reference"]
