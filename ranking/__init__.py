"""Features and similarity learning: the pretrained backbone, pooled embeddings, triplet-trained re-ranking.

This package works on arrays and tensors only; it knows nothing of files, workspaces or the CLI.
"""
