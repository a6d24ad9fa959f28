"""The anywidget front end's kernel side: the widget, its request handlers, jobs and views."""

from .core import STATIC, PatchingWidget

__all__ = ["STATIC", "PatchingWidget"]
