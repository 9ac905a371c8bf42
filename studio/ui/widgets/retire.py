"""Taking a widget off screen for good, safely from any thread's garbage collection.

``setParent(None)`` hands a widget's C++ object to its Python wrapper. If nothing else holds the
wrapper it is deleted at once, on the GUI thread — but a wrapper caught in a reference cycle (a
lambda in one of its attributes that calls back into it, say) lives until the cyclic garbage
collector runs, and that runs on whichever thread happens to allocate: a training session's
thread, a lane's. Deleting a QWidget there corrupts Qt's widget list, and the next
``setStyleSheet`` over all widgets crashed (CI, a Train lesson switched while another trained).
:func:`retire` keeps the wrapper alive until Qt has deleted the widget on the GUI thread
(``deleteLater``), so the collector only ever finds a wrapper whose widget is gone.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

_retiring: set[QWidget] = set()


def retire(widget: QWidget) -> None:
    """Hide ``widget``, take it out of its parent and delete it when the event loop turns."""
    widget.hide()  # gone now, not when the event loop next deletes it
    _retiring.add(widget)
    widget.destroyed.connect(lambda *_: _retiring.discard(widget))
    widget.setParent(None)
    widget.deleteLater()
