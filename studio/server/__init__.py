"""``studio serve``: the studio's own models over an OpenAI-compatible HTTP API. No Qt here.

:mod:`.app` routes and authenticates, :mod:`.schemas` validates requests and shapes responses,
:mod:`.streaming` carries job events to clients, :mod:`.catalog` names the models on offer. Every
request becomes an ordinary studio job on one :class:`~studio.core.jobs.JobRunner`, as in the GUI.
"""
