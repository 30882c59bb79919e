"""Stage 5: the loss module users call. Imports torch."""

from lossdsl.runtime.core import InputError, LossOutput, LossRuntime

__all__ = ["InputError", "LossOutput", "LossRuntime"]
