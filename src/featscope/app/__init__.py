"""The interactive app: the UMAP map of a run, tooltips, Grad-CAM on click.

``featscope serve RUN`` calls :func:`featscope.app.server.serve`; notebooks use
:func:`featscope.app.server.show` (exported as ``featscope.show``).
"""
