"""The only bridge between work and widgets: runs jobs off the GUI thread and emits Qt signals."""
