"""The evaluation loop as stages, each a function with a typed input and output:

    plan (tmbench.plan)  Suite + selections      -> SuitePlan (runs, metrics, prompts)
    generate             Session + Job           -> Generated (samples, batch timings, memory)
    score                samples + MetricPlans   -> Scored (metric values, judges, notes)
    record               RunSpec + Generated + Scored -> RunRecord

:class:`Session` holds what lives across the runs of one invocation (settings, loaded models,
scores of metrics of the model alone). Memory back-off wraps the per-batch decode
(:func:`generate.with_memory_backoff`) and torchrun sharding wraps the whole generate stage
(:func:`generate.sharded`); neither is a branch inside it. ``tmbench.runner`` strings the
stages together with resume and locks.
"""
