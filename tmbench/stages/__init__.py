"""The evaluation loop as stages, each a function with a typed input and output:

    plan (tmbench.plan)  Suite + selections      -> SuitePlan (runs, metrics, prompts)
    generate             Session + Job           -> Generated (samples, batch timings, memory)
    score                samples + MetricPlans   -> Scored (metric values, judges, notes)
    record               RunSpec + Generated + Scored -> RunRecord

:class:`Session` holds what lives across the runs of one invocation (settings, loaded models,
scores of metrics of the model alone). Memory back-off wraps the per-batch decode
(:func:`generate.with_memory_backoff`), resume from partial files wraps the generate stage
(:func:`generate.resumable`) and torchrun sharding wraps the resumable stage
(:func:`generate.sharded`); none is a branch inside it. ``tmbench.runner`` strings the stages
together with the skip of finished runs, locks and the human row.
"""
