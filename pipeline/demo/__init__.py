"""The built-in demo world: a seeded toy arithmetic task with a small student and a
larger teacher LM (shared tokenizer), shipped under ``demo_world/``.

See :mod:`pipeline.demo.world` for paths and :func:`pipeline.demo.world.build_demo_world`
to regenerate it (``python -m jobs.build_demo``).
"""
