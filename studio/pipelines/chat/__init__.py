"""Chat with language models (issue #5): local transformers models and OpenAI-compatible servers.

Qt-free. :mod:`.types` holds the request and the streamed chunks every backend speaks; local and
remote backends implement :class:`.types.ChatBackend`; the GUI, the CLI and ``studio serve`` all run
chat through the GPU worker's job queue with the same request.
"""
