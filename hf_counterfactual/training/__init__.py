from .config import TrainingConfig
from .loop import TrainProgress, make_accelerator, model_loss_step, predict, train

__all__ = ["TrainProgress", "TrainingConfig", "make_accelerator", "model_loss_step", "predict", "train"]
