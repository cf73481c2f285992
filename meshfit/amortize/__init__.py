"""Amortized fitting: networks that regress a representation's parameters from the views in one
forward pass, trained with meshfit's own renderer in the loop, refined by the fitting engine.

Layers, lowest first: ``config`` (``TrainConfig``), ``task`` (the representation and rig, in one
canonical parameterisation), ``inputs`` (training images rendered on the fly, and a dataset's
images made into the same inputs), ``network`` (the Flax NNX regressor and its decoding),
``train`` (losses and the jitted step, data-parallel over devices), ``validation`` (the pyrender
validation set), ``run`` (the run folder, the training loop, checkpoints, ``Regressor``),
``predict`` (``meshfit predict``: a dataset in, what ``meshfit fit`` writes out).
"""

from meshfit.amortize.config import TrainConfig
from meshfit.amortize.predict import predict, predict_folder
from meshfit.amortize.run import Regressor, train, train_folder
from meshfit.amortize.task import Task

__all__ = ["Regressor", "Task", "TrainConfig", "predict", "predict_folder", "train", "train_folder"]
