"""Clean and AutoAttack robust accuracy, RobustBench-exact, chunked, resumable and sharded."""

from ikl_zoo import lazy_getattr

_LAZY = {"EvalResult": "ikl_zoo.evaluate.result", "ModelFacts": "ikl_zoo.evaluate.result",
         "evaluate": "ikl_zoo.evaluate.runner", "EvalSettings": "ikl_zoo.evaluate.settings",
         "DEFAULT_CHUNK_SIZE": "ikl_zoo.evaluate.settings", "DEFAULT_N_EXAMPLES": "ikl_zoo.evaluate.settings",
         "evaluate_model": "ikl_zoo.evaluate.run", "ModelRequest": "ikl_zoo.evaluate.run",
         "resolve_attacks": "ikl_zoo.evaluate.attacks", "format_summary": "ikl_zoo.evaluate.summary",
         "load_robustbench_model": "ikl_zoo.evaluate.sources"}
__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
