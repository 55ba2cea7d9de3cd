"""Vector storage on Qdrant (a server or cluster by URL, or local mode by path)."""

from __future__ import annotations

from feature_store.vector_store.config import VectorStoreConfig
from feature_store.vector_store.qdrant import QdrantVectorStore, VectorPoint

__all__ = ["QdrantVectorStore", "VectorPoint", "VectorStoreConfig"]
