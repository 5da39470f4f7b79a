"""``tiefwatch serve``: the search page, the HTTP API and the labelling page, one FastAPI app.

The web layer is thin: routes call what the CLI calls (``Searcher.search_images``, ``LabelApp``), and every request
passes one access check (``security``): a token when one is set, otherwise loopback Host headers only, and no
foreign Origin. ``app.create_app`` builds the app; ``app.serve`` runs it under uvicorn.
"""
