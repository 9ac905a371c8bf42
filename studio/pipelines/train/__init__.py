"""Training lessons (issue #6): small models that learn live, on data that ships or is generated.

Qt-free. Each lesson is a :class:`~studio.pipelines.train.base.Trainer` subclass registered in
:data:`~studio.pipelines.train.registry.LESSONS`; the window, the CLI and the tests drive the same
trainer objects.
"""
