"""eightbit.distributed: batch inference, calibration and sensitivity on a Dask cluster
(``pip install 'eightbit[distributed]'``; docs/distributed.md).

    from dask.distributed import Client
    import eightbit.distributed as ebd
    client = Client(n_workers=2, threads_per_worker=1)
    y = ebd.predict("model.eb", dask_x, batch_size=256).compute()     # == eb.load("model.eb").run(x)
    qm = eb.quantize(graph, dask_x, method="entropy")                  # partitions observed on workers
    s = eb.sensitivity(graph, calib, data, client=client)              # per-node evaluations fan out

``predict`` (predict.py) runs a ``.eb`` file on every partition, each worker process loading it
once (models.py); ``calibration`` / ``DaskCalibration`` (dask_calibration.py) observe the partitions on
the workers and merge the statistics exactly; ``isolated_predictions`` (fanout.py) is the
distributed per-node step of eb.sensitivity and eb.quantize(accuracy_budget=...). The data rule
(arrays, dataframes, dicts) is in partitions.py.
"""
from .dask_calibration import DaskCalibration, calibration
from .fanout import isolated_predictions
from .models import cached_model, clear_cache
from .partitions import partitions
from .predict import predict

__all__ = ["predict", "calibration", "DaskCalibration", "isolated_predictions", "cached_model", "clear_cache",
           "partitions"]
