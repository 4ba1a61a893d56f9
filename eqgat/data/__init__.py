"""Data loading from HDF5 graph shards."""

from .shard_dataset import ShardDataset

__all__ = ["ShardDataset"]
