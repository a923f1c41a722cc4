"""FiftyOne integration (optional extra): database, dataset writer, saved views, agreement, App.

Nothing here imports ``fiftyone`` at module top; :func:`soebench.fo.db.connect` does, with an
install hint when it is missing.
"""
