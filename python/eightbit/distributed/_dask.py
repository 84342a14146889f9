"""The one place eightbit.distributed imports Dask (an optional extra), with an install hint."""
from __future__ import annotations

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("eightbit.distributed needs Dask: pip install 'eightbit[distributed]' "
                      f"(dask[distributed]); {exc}") from exc

__all__ = ["dask", "da", "distributed", "compute", "check_client"]


def check_client(client):
    """``client`` (None or a dask.distributed Client), or TypeError."""
    if client is not None and not isinstance(client, distributed.Client):
        raise TypeError(f"client: expected a dask.distributed.Client or None, got {type(client).__name__}")
    return client


def compute(tasks, client=None) -> list:
    """The values of ``tasks`` (dask collections or Delayed), computed together on ``client``, or
    on Dask's default scheduler (the active distributed Client if there is one)."""
    if client is None:
        return list(dask.compute(*tasks))
    return list(dask.compute(*tasks, scheduler=client))
