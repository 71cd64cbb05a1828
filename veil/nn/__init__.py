"""`veil.nn`: layers, losses and training on secret parameters, with torch's names.

>>> import torch, veil
>>> def f():
...     if veil.rank() == 0:              # the owner's RNG draws the init
...         torch.manual_seed(0)
...     model = veil.nn.Sequential(veil.nn.Linear(4, 8), veil.nn.ReLU(), veil.nn.Linear(8, 1))
...     g = torch.Generator().manual_seed(1)
...     x = veil.tensor(torch.randn(16, 4, generator=g) if veil.rank() == 1 else None, owner=1)
...     y = veil.tensor(torch.randn(16, 1, generator=g) if veil.rank() == 1 else None, owner=1)
...     opt = veil.optim.SGD(model.parameters(), lr=0.1)
...     loss = veil.nn.MSELoss()(model(x), y)
...     loss.backward()
...     opt.step()
...     return len(model.parameters())
>>> veil.run(f, parties=2, seed=0)
[4, 4]
"""

from . import functional, utils
from .convert import from_torch
from .layers import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Dropout, Flatten, GELU, Identity,
                     LayerNorm, Linear, MaxPool2d, ReLU, Sigmoid, Tanh)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .losses import BCELoss, HuberLoss, KLDivLoss, L1Loss, NLLLoss, SmoothL1Loss
from .layers_more import CosineSimilarity, Hardtanh, LogSoftmax, ReLU6, Softmax
from .layers_more import (AdaptiveMaxPool2d, BatchNorm1d, BatchNorm2d, BatchNorm3d, Conv1d,
                          Embedding, GRUCell, LSTMCell)
from . import more_functional
from .module import Module, Sequential, parameter
from .plot import save_loss_curve
from .train import History, evaluate, fit

__all__ = ["Module", "Sequential", "parameter", "Linear", "Conv2d", "ReLU", "Sigmoid", "Tanh",
           "GELU", "Identity", "Flatten", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "LayerNorm", "Dropout", "MSELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "functional", "utils", "from_torch", "fit", "evaluate", "History", "save_loss_curve",
           "BCELoss", "HuberLoss", "KLDivLoss", "L1Loss", "NLLLoss", "SmoothL1Loss",
           "CosineSimilarity", "Hardtanh", "LogSoftmax", "ReLU6", "Softmax", "more_functional",
           "AdaptiveMaxPool2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Conv1d",
           "Embedding", "GRUCell", "LSTMCell"]
